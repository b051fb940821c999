"""``ParallelOptimizer``: a search algorithm, a worker pool and the scheduler, as one call.

::

    optimizer = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=2)
    result = optimizer.run(MyStrategy, "demo", "2015-01-01", "2024-12-31", objective="sharpe")
    result.best, result.top(5)

The driver loads the bundle once, puts it in Ray's object store once (the pool's
:class:`BundleStore`, keyed by the bundle's SHA-256), checks the parameter names with
a one-bar dry run, ships the strategy class to every actor once per run, and
streams results back. A pool passed in (``pool=`` or the guide's ``worker_pool=``)
outlives the run; one the optimizer creates is closed at the end.
"""

from __future__ import annotations

import math
import sys
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from rustybt_ray.cluster.protocol import JobSpec, TrialOutcome
from rustybt_ray.cluster.scheduler import Scheduler
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.engine.run import run_metrics
from rustybt_ray.errors import SearchSpaceError, StrategyError
from rustybt_ray.metrics import METRIC_DIRECTIONS
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.search import GridSearchAlgorithm, SearchAlgorithm
from rustybt_ray.optimize.space import ParameterSpace

#: The pool most recently used by an optimizer, for the guide's monitoring facades.
_last_pool: weakref.ref[Any] | None = None


def last_pool() -> Any | None:
    """The most recently used live :class:`WorkerPool`, or None."""
    pool = _last_pool() if _last_pool is not None else None
    return pool if pool is not None and not getattr(pool, "closed", False) else None


class _SearchSource:
    """Adapts a :class:`SearchAlgorithm` to the scheduler's ``TrialSource``: turns metrics into objective values."""

    def __init__(self, algorithm: SearchAlgorithm, objective: str | Callable[[dict[str, float]], float]) -> None:
        self.algorithm = algorithm
        self.objective = objective
        self.best: float | None = None
        self.sign = 1.0

    def ask(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        return [(t.number, t.params) for t in self.algorithm.ask(n)]

    def value(self, outcome: TrialOutcome) -> float:
        if outcome.metrics is None:
            return math.nan
        if callable(self.objective):
            return float(self.objective(outcome.metrics))
        return float(outcome.metrics.get(self.objective, math.nan))

    def tell(self, outcome: TrialOutcome) -> None:
        if outcome.status != "complete":
            self.algorithm.tell(outcome.number, None, "failed")
            return
        v = self.value(outcome)
        self.algorithm.tell(outcome.number, [v], "complete")
        if not math.isnan(v) and (self.best is None or self.sign * v > self.sign * self.best):
            self.best = v

    @property
    def is_finished(self) -> bool:
        return self.algorithm.is_finished


class ParallelOptimizer:
    """Runs a search over a strategy's parameters on a pool of Ray actors.

    Args:
        algorithm: a :class:`SearchAlgorithm` (grid, random, ...); a bare
            :class:`ParameterSpace` means a grid search over it.
        n_jobs: workers to start when no pool is given (default: the cluster's CPUs).
        pool: a :class:`WorkerPool` to run on (kept open after the run). ``worker_pool``
            is the guide's name for the same thing.
        config: an :class:`OptimizationConfig` (default: ``OptimizationConfig.from_env()``).
        address: a Ray cluster address to connect to when Ray is not initialized yet.
        progress: show a progress bar (tqdm; a notebook widget in Jupyter).
    """

    def __init__(
        self,
        algorithm: SearchAlgorithm | ParameterSpace,
        n_jobs: int | None = None,
        *,
        pool: Any = None,
        worker_pool: Any = None,
        config: OptimizationConfig | None = None,
        address: str | None = None,
        progress: bool = True,
    ) -> None:
        if isinstance(algorithm, ParameterSpace):
            algorithm = GridSearchAlgorithm(algorithm)
        if not isinstance(algorithm, SearchAlgorithm):
            raise SearchSpaceError(f"algorithm must be a SearchAlgorithm or a ParameterSpace, got {algorithm!r}")
        if pool is not None and worker_pool is not None and pool is not worker_pool:
            raise StrategyError("pass either pool= or worker_pool=, not both")
        if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs < 1):
            raise StrategyError(f"n_jobs must be a positive int, got {n_jobs!r}")
        self.algorithm = algorithm
        self.n_jobs = n_jobs
        self.pool = pool if pool is not None else worker_pool
        self.config = config if config is not None else OptimizationConfig.from_env()
        self.address = address
        self.progress = progress
        self.last_stats: Any = None

    def run(
        self,
        strategy: type[TradingAlgorithm],
        bundle: Bundle | str = "demo",
        start_date: Any = None,
        end_date: Any = None,
        objective: str | Callable[[dict[str, float]], float] = "sharpe",
        *,
        direction: str | None = None,
        capital_base: float = 100_000.0,
        commission: CommissionModel | None = None,
        slippage: SlippageModel | None = None,
        fill_price: str = "open",
    ) -> OptimizationResult:
        """Run every trial the algorithm asks for and return the :class:`OptimizationResult`.

        ``objective`` is a metric name (its direction comes from
        :data:`rustybt_ray.metrics.METRIC_DIRECTIONS` unless ``direction`` is given) or
        a callable on the metrics dict (maximized unless ``direction='minimize'``).
        """
        global _last_pool
        from rustybt_ray.cluster.pool import WorkerPool
        from rustybt_ray.data import load_bundle

        b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        objective_name, direction = _objective(objective, direction)
        space = self.algorithm.space
        self.algorithm.start(space, [(objective_name, direction)])
        _dry_run(strategy, b, start_date, end_date, space)
        _ship_by_value(strategy)

        own_pool = self.pool is None
        pool = self.pool if not own_pool else WorkerPool(self.n_jobs, self.config, address=self.address)
        _last_pool = weakref.ref(pool)
        source = _SearchSource(self.algorithm, objective)
        source.sign = 1.0 if direction == "maximize" else -1.0
        job_id = uuid.uuid4().hex
        try:
            ref = pool.store.put(b)
            spec = JobSpec(job_id, strategy, [ref], b.version, start_date, end_date, float(capital_base),
                           commission, slippage, fill_price, self.config.return_daily_returns)
            pool.prepare(spec)
            bar = _progress_bar(self.progress, getattr(self.algorithm, "n_total", None), objective_name)

            def on_result(o: TrialOutcome) -> None:
                if bar is not None:
                    bar.update(1)
                    if source.best is not None:
                        bar.set_postfix({f"best {objective_name}": f"{source.best:.4g}"}, refresh=False)

            scheduler = Scheduler(
                pool, spec,
                min_batch_seconds=self.config.min_batch_seconds,
                max_batch_size=self.config.max_batch_size,
                batches_in_flight=self.config.batches_in_flight,
                max_retries=self.config.max_retries,
                health_check_interval_s=self.config.health_check_interval_s,
                on_result=on_result,
            )
            try:
                results = scheduler.run(source)
            finally:
                if bar is not None:
                    bar.close()
            self.last_stats = scheduler.stats
            pool.release(job_id)
        finally:
            if own_pool:
                pool.close()
            elif not self.config.enable_bundle_pooling:
                pool.store.release(b.version)

        records = []
        for number in sorted(results):
            o, attempts = results[number]
            records.append({
                "number": number, "params": o.params, "metrics": o.metrics, "status": o.status,
                "error": o.error, "duration_s": o.duration_s, "worker": o.worker, "attempts": attempts,
                "returns": o.returns,
            })
        metric_names = sorted(next((r["metrics"] for r in records if r["metrics"]), {}) or METRIC_DIRECTIONS)
        param_names = list(space.names) if space is not None else sorted({k for r in records for k in r["params"]})
        meta = {
            "strategy": f"{strategy.__module__}.{strategy.__qualname__}",
            "bundle": b.name,
            "bundle_version": b.version,
            "start": str(start_date),
            "end": str(end_date),
            "capital_base": float(capital_base),
            "algorithm": type(self.algorithm).__name__,
        }
        result = OptimizationResult.from_records(records, param_names, metric_names, objective_name, direction, meta)
        # Per-bar returns stay beside the table (one float32 array per trial), when asked for.
        result.returns = {r["number"]: r["returns"] for r in records if r["returns"] is not None}
        return result


def _objective(objective: Any, direction: str | None) -> tuple[str, str]:
    if callable(objective):
        name = getattr(objective, "__name__", "objective")
        d = direction or "maximize"
    elif isinstance(objective, str):
        if objective not in METRIC_DIRECTIONS:
            raise SearchSpaceError(
                f"unknown objective {objective!r}; use one of {', '.join(sorted(METRIC_DIRECTIONS))} or a callable"
            )
        name = objective
        d = direction or METRIC_DIRECTIONS[objective]
        if d == "none":
            d = "maximize"
    else:
        raise SearchSpaceError(f"objective must be a metric name or a callable, got {objective!r}")
    if d not in ("maximize", "minimize"):
        raise SearchSpaceError(f"direction must be 'maximize' or 'minimize', got {d!r}")
    return name, d


def _dry_run(strategy: type[TradingAlgorithm], b: Bundle, start: Any, end: Any,
             space: ParameterSpace | None) -> None:
    """Check parameter names by running ``initialize`` and one bar on the driver, before any actor starts."""
    if space is None:
        return
    if not space.unconfirmed_names(strategy):
        return
    i0, i1 = b.index_range(start, end)
    if i1 <= i0:
        raise StrategyError(f"no bars between {start} and {end} in bundle {b.name!r}")
    # Any point of the space will do: only the names are checked here.
    try:
        probe = space.sample(np.random.default_rng(0))
    except SearchSpaceError:  # constraints too tight to sample: take the first grid point
        probe = next(space.grid(points=2), None)
        if probe is None:
            return
    try:
        run_metrics(strategy, b, b.calendar[i0], b.calendar[i0], params=probe)
    except StrategyError as exc:
        raise SearchSpaceError(f"the parameter space does not fit {strategy.__name__}: {exc}") from None
    except Exception:  # noqa: BLE001 - only the names are checked here; trials report their own errors
        pass


def _ship_by_value(strategy: type) -> None:
    """Pickle the strategy's module by value when workers may not be able to import it.

    Strategies live in notebooks, scripts, test files and files the CLI loaded by
    path: modules that exist only in the driver. ``__main__`` is already pickled by
    value by cloudpickle; this does the same for any module outside rustybt_ray.
    """
    from ray import cloudpickle

    name = strategy.__module__
    module = sys.modules.get(name)
    if module is None or name == "__main__" or name.split(".")[0] == "rustybt_ray":
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:  # a builtin or otherwise unregistrable module: leave it to Ray
        pass


def _progress_bar(enabled: bool, total: int | None, objective: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"trials ({objective})", unit="trial", leave=True, mininterval=0.5)

