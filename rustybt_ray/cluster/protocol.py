"""What the driver and the worker actors exchange: a job spec once, then trial batches.

Kept small and plain (dataclasses of builtins), so a batch round trip costs little
beyond Ray's own per-call overhead, and the strategy class is shipped once per job
and actor, not once per trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict, Union

from rustybt_ray.engine.costs import CommissionModel, SlippageModel


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
