"""``SweepSession``: one job on a worker pool, the plumbing every sweep shares.

Grid and random searches, Optuna studies and walk-forward analyses all do the same
things around their search: load the bundle once, put it in Ray's object store once
(the pool's :class:`BundleStore`, keyed by the bundle's SHA-256), ship the strategy
class by value, prepare the job on every actor, run a scheduler over a trial source
with a progress bar, and clean up (close a pool it created, release the job). They
differ only in the trial source, so that is the one thing :meth:`SweepSession.run`
takes.
"""

from __future__ import annotations

import sys
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from rustybt_ray.cluster.protocol import JobSpec, TrialOutcome, route_for
from rustybt_ray.cluster.scheduler import Scheduler, SchedulerStats, TrialSource
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.errors import StrategyError

#: The pool most recently used by a sweep, for the guide's monitoring facades.
_last_pool: weakref.ref[Any] | None = None


def last_pool() -> Any | None:
    """The most recently used live :class:`WorkerPool`, or None."""
    pool = _last_pool() if _last_pool is not None else None
    return pool if pool is not None and not getattr(pool, "closed", False) else None


class SweepSession:
    """A context manager holding one prepared job on a (borrowed or owned) worker pool.

    Args:
        strategy: the :class:`TradingAlgorithm` subclass every trial runs.
        bundle: a loaded :class:`Bundle` or a registered bundle name.
        start, end: the job's date range (trials may override it, see
            :data:`rustybt_ray.cluster.protocol.TRIAL_OVERRIDES`).
        pool: a :class:`WorkerPool` to borrow (left open); None starts one with
            ``n_jobs`` workers and closes it on exit.
        config: the :class:`OptimizationConfig` (batching, retries, caching, returns).
        address: Ray address to connect to when Ray is not initialized.
        pruning: early stopping, or None: ``{"pruner": optuna pruner, "direction":
            "maximize"|"minimize", "objective": metric name or callable, "every":
            "year" or bars, "grouped": bool}``; a :class:`PruningCoordinator` actor lives as
            long as the session (grouped: one mirror study per group of trials, see
            :meth:`PruningCoordinator.assign`).
        fractional_shares: trials trade fractions of a share (see
            :func:`~rustybt_ray.engine.run.run_metrics`); checked by
            :func:`check_fractional_shares`.
    """

    def __init__(
        self,
        strategy: type[TradingAlgorithm],
        bundle: Bundle | str,
        start: Any,
        end: Any,
        *,
        pool: Any = None,
        n_jobs: int | None = None,
        config: OptimizationConfig | None = None,
        address: str | None = None,
        capital_base: float = 100_000.0,
        commission: CommissionModel | None = None,
        slippage: SlippageModel | None = None,
        fill_price: str = "open",
        pruning: dict[str, Any] | None = None,
        fractional_shares: bool = False,
    ) -> None:
        from rustybt_ray.data import load_bundle

        if not (isinstance(strategy, type) and issubclass(strategy, TradingAlgorithm)):
            raise StrategyError(f"strategy must be a TradingAlgorithm subclass, got {strategy!r}")
        self.strategy = strategy
        self.route = route_for(strategy)  # a bad route_by fails here, before Ray starts
        check_fractional_shares(strategy, fractional_shares)
        self.fractional_shares = bool(fractional_shares)
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.start, self.end = start, end
        self.config = config if config is not None else OptimizationConfig.from_env()
        self.capital_base = float(capital_base)
        self.commission, self.slippage, self.fill_price = commission, slippage, fill_price
        self._borrowed = pool
        self._n_jobs = n_jobs
        self._address = address
        self._pruning = pruning
        self.coordinator: Any = None
        self.pool: Any = None
        self.spec: JobSpec | None = None
        self.stats: list[SchedulerStats] = []

    def identity(self) -> dict[str, Any]:
        """What every trial's journal key shares (see :func:`~rustybt_ray.optimize.journal.trial_key`).

        The dates are the bars actually run, not the dates as typed: "2020-01-01" and
        "2020-01-02" name the same backtest when the 1st is a holiday. A trial with its
        own dates (walk-forward) replaces ``start`` and ``end``.

        ``fractional_shares`` is in it only when True, so the keys of every whole-share
        journal and store written before the option existed stay valid.
        """
        from rustybt_ray.optimize.journal import strategy_fingerprint

        b = self.bundle
        i0, i1 = b.index_range(self.start, self.end)
        job: dict[str, Any] = {
            "strategy": strategy_fingerprint(self.strategy), "bundle_version": b.version,
            "start": str(b.calendar[i0]) if i1 > i0 else str(self.start),
            "end": str(b.calendar[i1 - 1]) if i1 > i0 else str(self.end),
            "capital_base": self.capital_base,
            "commission": repr(self.commission), "slippage": repr(self.slippage), "fill_price": self.fill_price,
        }
        if self.fractional_shares:
            job["fractional_shares"] = True
        return job

    def __enter__(self) -> SweepSession:
        global _last_pool
        from rustybt_ray.cluster.pool import WorkerPool

        ship_by_value(self.strategy)
        self.pool = self._borrowed if self._borrowed is not None else WorkerPool(
            self._n_jobs, self.config, address=self._address, warm_kernel=_is_vector(self.strategy))
        _last_pool = weakref.ref(self.pool)
        try:
            ref = self.pool.store.put(self.bundle)
            pruning = None
            if self._pruning is not None:
                from rustybt_ray.optimize.pruning import PruningCoordinatorActor

                p = self._pruning
                ship_by_value(type(p["pruner"]))
                ship_by_value(p["objective"])
                self.coordinator = PruningCoordinatorActor.remote(p["pruner"], p["direction"],
                                                                  bool(p.get("grouped", False)))
                import ray

                ray.get(self.coordinator.stats.remote())  # creation errors surface here, not in every trial
                pruning = {"reporter": [self.coordinator], "objective": p["objective"], "every": p["every"]}
            self.spec = JobSpec(uuid.uuid4().hex, self.strategy, [ref], self.bundle.version, self.start, self.end,
                                self.capital_base, self.commission, self.slippage, self.fill_price,
                                self.config.return_daily_returns, pruning,
                                kernel_memory_bytes=self.config.kernel_memory_bytes,
                                bundle_shape=(int(self.bundle.calendar.shape[0]), len(self.bundle.assets)),
                                route=self.route, fractional_shares=self.fractional_shares)
            self.pool.prepare(self.spec)
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self.coordinator is not None:
            import ray

            ray.kill(self.coordinator)
            self.coordinator = None
        if self.pool is None:
            return
        try:
            if self.spec is not None and not getattr(self.pool, "closed", False):
                self.pool.release(self.spec.job_id)
        finally:
            if self._borrowed is None:
                self.pool.close()
            elif not self.config.enable_bundle_pooling:
                self.pool.store.release(self.bundle.version)

    def run(
        self,
        source: TrialSource,
        *,
        total: int | None = None,
        desc: str = "trials",
        progress: bool = True,
        on_result: Callable[[TrialOutcome], None] | None = None,
        postfix: Callable[[], dict[str, str] | None] | None = None,
        keep_results: bool = True,
    ) -> dict[int, tuple[TrialOutcome, int]]:
        """Run ``source``'s trials on the pool; returns ``{number: (outcome, attempts)}``.

        ``keep_results=False`` (a source that stores results itself) returns ``{}``.

        ``postfix`` (called after each result) gives the progress bar's status, for
        example the best objective so far.
        """
        if self.spec is None:
            raise RuntimeError("SweepSession.run() outside its 'with' block")
        bar = progress_bar(progress, total, desc)

        def _on_result(o: TrialOutcome) -> None:
            if on_result is not None:
                on_result(o)
            if bar is not None:
                bar.update(1)
                info = postfix() if postfix is not None else None
                if info:
                    bar.set_postfix(info, refresh=False)

        scheduler = Scheduler(
            self.pool, self.spec,
            min_batch_seconds=self.config.min_batch_seconds,
            max_batch_size=self.config.max_batch_size,
            batches_in_flight=self.config.batches_in_flight,
            max_retries=self.config.max_retries,
            health_check_interval_s=self.config.health_check_interval_s,
            on_result=_on_result,
            keep_results=keep_results,
        )
        try:
            return scheduler.run(source)
        finally:
            self.stats.append(scheduler.stats)
            if bar is not None:
                bar.close()


def ship_by_value(obj: Any) -> None:
    """Pickle the module defining ``obj`` (a strategy class, a pruner, an objective function) by value.

    Strategies live in notebooks, scripts, test files and files the CLI loaded by
    path: modules that exist only in the driver. ``__main__`` is already pickled by
    value by cloudpickle; this does the same for any module outside rustybt_ray.
    """
    from ray import cloudpickle

    name = getattr(obj, "__module__", None)
    if not isinstance(name, str):
        return
    module = sys.modules.get(name)
    if module is None or name == "__main__" or name.split(".")[0] in ("rustybt_ray", *sys.stdlib_module_names):
        return
    path = getattr(module, "__file__", None) or ""
    if not path or "site-packages" in path or "dist-packages" in path:
        return  # installed packages (optuna's pruners, ...) import on every worker
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:  # a builtin or otherwise unregistrable module: leave it to Ray
        pass


def progress_bar(enabled: bool, total: int | None, desc: str) -> Any:
    """A tqdm bar (a widget in Jupyter), or None when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="trial", leave=True, mininterval=0.5)


def check_fractional_shares(strategy: Any, fractional_shares: Any) -> None:
    """Refuse a ``fractional_shares`` that is not a bool, or True with a vectorized strategy.

    Raises :class:`StrategyError` naming the fix; called on the driver before Ray starts.
    """
    if not isinstance(fractional_shares, (bool, np.bool_)):
        raise StrategyError(f"fractional_shares must be True or False, got {fractional_shares!r}")
    if fractional_shares and _is_vector(strategy):
        name = getattr(strategy, "__name__", repr(strategy))
        raise StrategyError(
            f"fractional_shares=True cannot be swept with {name}: a VectorStrategy's trials run on the "
            "vectorized kernel, which trades whole shares only; sweep an event-engine strategy instead (a "
            "TradingAlgorithm, not a VectorStrategy, e.g. handle_data calling order_target_percents with the "
            "same weights), or pass fractional_shares=False"
        )


def _is_vector(strategy: type) -> bool:
    from rustybt_ray.vector.strategy import VectorStrategy

    return isinstance(strategy, type) and issubclass(strategy, VectorStrategy)
