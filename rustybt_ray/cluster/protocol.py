"""What the driver and the worker actors exchange: a job spec once, then trial batches.

Kept small and plain (dataclasses of builtins), so a batch round trip costs little
beyond Ray's own per-call overhead, and the strategy class is shipped once per job
and actor, not once per trial.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict, Union

from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.errors import StrategyError

#: The kernel memory budget a JobSpec carries unless told otherwise (OptimizationConfig's default).
DEFAULT_KERNEL_MEMORY_BYTES = 256 << 20


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run any trial of one optimizer run, except the parameters.

    ``bundle_ref`` holds the bundle's ``ObjectRef`` inside a list: Ray resolves
    top-level ``ObjectRef`` arguments before a call, and the worker must resolve it
    itself, once, to keep the zero-copy view for the whole job.
    """

    job_id: str
    strategy: type
    bundle_ref: list[Any]
    bundle_version: str
    start: Any
    end: Any
    capital_base: float
    commission: CommissionModel | None = None
    slippage: SlippageModel | None = None
    fill_price: str = "open"
    with_returns: bool = False
    #: Early stopping, or None: ``{"reporter": [actor], "objective": name or callable,
    #: "every": "year" or bars}``. Workers call ``reporter.report.remote(number, step,
    #: value) -> stop?`` at each checkpoint and ``reporter.finish.remote(number, status,
    #: value)`` at the end; the reporter is opaque here (cluster knows nothing of Optuna).
    pruning: dict[str, Any] | None = None
    #: Bytes one vectorized kernel call may hold on a worker (``OptimizationConfig.kernel_memory_mb``):
    #: a :class:`~rustybt_ray.vector.VectorStrategy` job runs ``trials_per_call`` trials per call.
    kernel_memory_bytes: int = DEFAULT_KERNEL_MEMORY_BYTES
    #: ``(bars, assets)`` of the bundle, so the driver sizes vector batches without the bundle itself.
    bundle_shape: tuple[int, int] | None = None
    #: The routing key of a trial's parameters (see :func:`route_for`), or None: no routing.
    #: Trials with the same key go to the same actor and batch, so a window's indicator
    #: is computed once per actor.
    route: Callable[[Mapping[str, Any]], Hashable] | None = None
    #: Trade fractions of a share (``run_metrics(..., fractional_shares=True)``); event-engine jobs only.
    fractional_shares: bool = False

    @property
    def vector(self) -> bool:
        """Whether the strategy is a :class:`~rustybt_ray.vector.VectorStrategy` (batched kernel path)."""
        from rustybt_ray.vector.strategy import VectorStrategy

        return isinstance(self.strategy, type) and issubclass(self.strategy, VectorStrategy)

    def kernel_trials(self) -> int | None:
        """Trials per kernel call for a vector job over the whole bundle; None for other jobs or an unknown shape.

        Sized with the bundle's full length, an upper bound on any trial's date range,
        so a batch of this size fits one call of every worker (which sizes its calls
        with the trial's own range, see :func:`~rustybt_ray.vector.budget.trials_per_call`).
        """
        if not self.vector or self.bundle_shape is None:
            return None
        from rustybt_ray.vector.budget import trials_per_call

        bars, assets = self.bundle_shape
        return trials_per_call(max(1, bars), max(1, assets), self.kernel_memory_bytes)


@dataclass(frozen=True)
class RouteBy:
    """A routing key: the values of the named parameters (their strategy defaults when a trial omits them).

    A plain class so it pickles with the JobSpec; values that cannot be hashed (a
    list) are keyed by their ``repr``.
    """

    names: tuple[str, ...]
    defaults: tuple[Any, ...]

    def __call__(self, params: Mapping[str, Any]) -> Hashable:
        """The key of one trial's parameters."""
        out = []
        for name, default in zip(self.names, self.defaults):
            v = params.get(name, default)
            try:
                hash(v)
            except TypeError:
                v = repr(v)
            out.append(v)
        return tuple(out)


def route_for(strategy: type) -> RouteBy | None:
    """The routing key of ``strategy``: its ``route_by`` class attribute, a parameter name or a tuple of them.

    None when the strategy defines no ``route_by``. Name the parameters that pick the
    expensive cached arrays (``route_by = "slow"`` for a moving-average crossover whose
    slow windows are many): trials sharing them then run on one actor. Raises
    :class:`StrategyError` for a name that is not a parameter of the strategy, before Ray starts.
    """
    spec = getattr(strategy, "route_by", None)
    if spec is None:
        return None
    names = (spec,) if isinstance(spec, str) else spec
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) for n in names):
        raise StrategyError(f"{strategy.__name__}.route_by must be a parameter name or a tuple of them, got {spec!r}")
    params = {k: v for k, v in strategy.parameters().items() if k != "route_by"}
    unknown = [n for n in names if n not in params]
    if unknown:
        raise StrategyError(f"{strategy.__name__}.route_by names {', '.join(map(repr, unknown))}, not parameters "
                            f"of the strategy; its parameters are {', '.join(sorted(params)) or '(none)'}")
    return RouteBy(tuple(names), tuple(params[n] for n in names))


#: Keys a trial may override from its job: its own date range (walk-forward windows
#: share one job and one bundle but not dates) and whether per-bar returns come back.
TRIAL_OVERRIDES = frozenset({"start", "end", "with_returns"})

#: A trial as the scheduler ships it: ``(number, params)``, or
#: ``(number, params, overrides)`` with ``overrides`` keys from :data:`TRIAL_OVERRIDES`.
Trial = Union[tuple[int, dict[str, Any]], tuple[int, dict[str, Any], dict[str, Any]]]


class TrialStatus(StrEnum):
    """How a trial ended. A ``str``: members equal their values, which are what tables and journals hold."""

    COMPLETE = "complete"
    FAILED = "failed"
    PRUNED = "pruned"  #: stopped early by a pruner; its metrics cover the bars it ran


#: Every status value, in the order messages list them.
STATUSES: tuple[str, ...] = tuple(s.value for s in TrialStatus)


class TrialExtra(TypedDict, total=False):
    """The named keys of :attr:`TrialOutcome.extra`; each is present only when it applies."""

    lost: bool
    """Failed by the infrastructure (its workers kept dying, or the batch raised), not by the strategy:
    not journaled, so a rerun tries it again."""
    intermediate: dict[int, float]
    """The objective at each checkpoint (step -> value), from a run with pruning."""
    step: int
    """The checkpoint at which a pruned trial stopped."""
    bars: int
    """The bars a pruned trial ran."""
    twin_of: int
    """The number of the trial with the same key whose result this one shares (it did not run)."""


@dataclass
class TrialOutcome:
    """The result of one trial as a worker reports it."""

    number: int
    params: dict[str, Any]
    status: str  #: a :class:`TrialStatus` (or its string value, read back from a journal)
    metrics: dict[str, float] | None
    error: str | None
    duration_s: float
    worker: int
    returns: Any = None  #: float32 per-bar returns when the job asked for them
    extra: TrialExtra = field(default_factory=lambda: TrialExtra())
    attempts: int = 1  #: runs it took, set by the scheduler when it finishes (0: answered from a journal)
