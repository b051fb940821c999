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
import os
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np

from rustybt_ray.cluster.protocol import TrialOutcome
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.engine.run import run_metrics
from rustybt_ray.errors import SearchSpaceError, StrategyError
from rustybt_ray.metrics import METRIC_DIRECTIONS
from rustybt_ray.optimize.journal import TrialJournal, trial_key
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.search import GridSearchAlgorithm, SearchAlgorithm
from rustybt_ray.optimize.session import SweepSession, last_pool
from rustybt_ray.optimize.space import ParameterSpace

__all__ = ["ParallelOptimizer", "last_pool"]

#: What ``objective=`` accepts: a metric name, a callable on the metrics dict, or a list of them.
Objective = Union[str, Callable[[dict[str, float]], float], Sequence[Union[str, Callable[[dict[str, float]], float]]]]


class _Objectives:
    """The sweep's objectives: names, directions and how to read each value from a trial's metrics."""

    def __init__(self, objective: Objective, direction: str | Sequence[str] | None) -> None:
        items = list(objective) if isinstance(objective, (list, tuple)) else [objective]
        if not items:
            raise SearchSpaceError("objective: give at least one metric name or callable")
        if direction is None or isinstance(direction, str):
            directions: list[str | None] = [direction] * len(items)
        else:
            directions = list(direction)
            if len(directions) != len(items):
                raise SearchSpaceError(f"{len(items)} objectives but {len(directions)} directions")
        self.names: list[str] = []
        self.directions: list[str] = []
        self.callables: dict[str, Callable[[dict[str, float]], float]] = {}
        for i, (obj, d) in enumerate(zip(items, directions)):
            name, d = _objective(obj, d)
            if callable(obj):
                if name in METRIC_DIRECTIONS:
                    raise SearchSpaceError(f"objective callable {name!r} has the name of a metric; rename the function")
                if name == "objective" and len(items) > 1:
                    name = f"objective_{i}"
                self.callables[name] = obj
            if name in self.names:
                raise SearchSpaceError(f"objective {name!r} is given twice")
            self.names.append(name)
            self.directions.append(d)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """``(name, direction)`` for each objective."""
        return list(zip(self.names, self.directions))

    def add_to(self, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics with each callable objective's value added under its name."""
        if not self.callables:
            return metrics
        out = dict(metrics)
        for name, fn in self.callables.items():
            out[name] = float(fn(metrics))
        return out

    def values(self, metrics: dict[str, float]) -> list[float]:
        """The objective values of a trial (NaN where a metric is missing)."""
        return [float(metrics.get(n, math.nan)) for n in self.names]


class _SearchSource:
    """Adapts a :class:`SearchAlgorithm` to the scheduler's ``TrialSource``.

    Turns metrics into objective values, and keeps the journal: a trial whose key is
    already there (from an earlier run, or earlier in this one) is answered from it
    without running; one whose twin is still running waits for the twin's result.

    With ``prefetch > 0`` (samplers whose ``ask`` is expensive, such as TPE late in a
    study), a background thread keeps up to ``prefetch`` trials asked in advance, so
    the sampler works while the scheduler waits in ``ray.wait`` (which releases the
    GIL) instead of while a worker waits for its next batch. One lock serializes every
    call into the algorithm.
    """

    def __init__(self, algorithm: SearchAlgorithm, objectives: _Objectives, journal: TrialJournal,
                 job: dict[str, Any], need_returns: bool, prefetch: int = 0) -> None:
        self.algorithm = algorithm
        self.objectives = objectives
        self.journal = journal
        self.job = job
        self.need_returns = need_returns
        self.best: float | None = None
        self.sign = 1.0 if objectives.directions[0] == "maximize" else -1.0
        self.keys: dict[int, str] = {}
        self.running: dict[str, int] = {}  # key -> number of the trial that runs it
        self.twins: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.reused: dict[int, TrialOutcome] = {}  # answered from the journal or a twin
        self._lock = threading.RLock()
        self._more = threading.Condition(self._lock)
        self._buffer: deque[tuple[int, dict[str, Any]]] = deque()
        self._prefetch = prefetch
        self._stopped = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if prefetch > 0:
            self._thread = threading.Thread(target=self._fill, name="rustybt-prefetch", daemon=True)
            self._thread.start()

    def _fill(self) -> None:
        while True:
            with self._more:
                while not self._stopped and (len(self._buffer) >= self._prefetch or self.algorithm.is_finished):
                    self._more.wait()
                if self._stopped:
                    return
                try:
                    got = self._ask_fresh(1)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the scheduler's thread
                    self._error = exc
                    return
                self._buffer.extend(got)
                if not got:  # the algorithm waits for results: a tell wakes us
                    self._more.wait(0.05)
            # The lock is free here between asks, so the scheduler's tells get in.

    def close(self) -> None:
        """Stop the prefetch thread (trials it asked but nobody took stay unrun)."""
        with self._more:
            self._stopped = True
            self._more.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def ask(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        with self._more:
            if self._error is not None:
                raise self._error
            out = [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]
            if len(out) < n:
                out += self._ask_fresh(n - len(out))
            self._more.notify_all()
            return out

    def _ask_fresh(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        while len(out) < n and not self.algorithm.is_finished:
            requests = self.algorithm.ask(n - len(out))
            if not requests:
                break
            for t in requests:
                key = trial_key(self.job, t.params)
                self.keys[t.number] = key
                rec = self.journal.get(key, need_returns=self.need_returns)
                if rec is not None:
                    self._answer(t.number, t.params, rec)
                elif key in self.running:
                    self.twins.setdefault(key, []).append((t.number, t.params))
                else:
                    self.running[key] = t.number
                    out.append((t.number, t.params))
        return out

    def _answer(self, number: int, params: dict[str, Any], rec: dict[str, Any]) -> None:
        o = TrialOutcome(number, params, rec["status"], rec.get("metrics"), rec.get("error"),
                         float(rec.get("duration_s") or 0.0), int(rec.get("worker") or -1), rec.get("returns"))
        self._with_objectives(o)  # callables are not part of the key: recompute, never trust a stored value
        self.reused[number] = o
        self._tell_algorithm(o)

    def _tell_algorithm(self, o: TrialOutcome) -> None:
        steps = o.extra.get("intermediate")
        report = getattr(self.algorithm, "report", None)
        if steps and report is not None:
            # The driver's study learns the intermediate values too (Optuna's plots, TPE).
            for step, value in sorted(steps.items()):
                if math.isfinite(value):
                    report(o.number, int(step), value)
        if o.status == "pruned":
            last = [v for _, v in sorted((steps or {}).items()) if math.isfinite(v)]
            self.algorithm.tell(o.number, [last[-1]] if last else None, "pruned", o.metrics)
            return
        if o.status != "complete" or o.metrics is None:
            self.algorithm.tell(o.number, None, "failed", o.metrics)
            return
        values = self.objectives.values(o.metrics)
        self.algorithm.tell(o.number, values, "complete", o.metrics)
        v = values[0]
        if not math.isnan(v) and (self.best is None or self.sign * v > self.sign * self.best):
            self.best = v

    def tell(self, outcome: TrialOutcome) -> None:
        with self._more:
            self._tell(outcome)
            self._more.notify_all()

    def _tell(self, outcome: TrialOutcome) -> None:
        key = self.keys.get(outcome.number)
        if key is not None:
            self.running.pop(key, None)
            # A trial failed by the infrastructure (its workers kept dying) may pass on a rerun;
            # a strategy's own exception would repeat, so it is journaled like a result.
            # The raw metrics are journaled: callable objectives are recomputed on reuse.
            if not outcome.extra.get("lost"):
                self.journal.append([{
                    "key": key, "params": outcome.params, "metrics": outcome.metrics, "status": outcome.status,
                    "error": outcome.error, "duration_s": outcome.duration_s, "worker": outcome.worker,
                    "returns": outcome.returns,
                }])
        self._with_objectives(outcome)
        self._tell_algorithm(outcome)
        for number, params in self.twins.pop(key, []) if key is not None else []:
            twin = TrialOutcome(number, params, outcome.status, outcome.metrics, outcome.error, 0.0,
                                outcome.worker, outcome.returns, {"twin_of": outcome.number})
            self.reused[number] = twin
            self._tell_algorithm(twin)

    def _with_objectives(self, o: TrialOutcome) -> None:
        """Add callable objectives' values to the metrics; one that raises fails the trial, not the sweep."""
        if o.metrics is None or not self.objectives.callables:
            return
        try:
            o.metrics = self.objectives.add_to(o.metrics)
        except Exception:  # noqa: BLE001 - the user's objective function: report, go on
            o.status = "failed"
            o.error = "the objective function raised:\n" + traceback.format_exc(limit=5)

    @property
    def is_finished(self) -> bool:
        with self._lock:
            return self.algorithm.is_finished and not self._buffer


class ParallelOptimizer:
    """Runs a search over a strategy's parameters on a pool of Ray actors.

    Args:
        algorithm: a :class:`SearchAlgorithm` (grid, random, Optuna, ...); a bare
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
        objective: Objective = "sharpe",
        *,
        direction: str | Sequence[str] | None = None,
        capital_base: float = 100_000.0,
        commission: CommissionModel | None = None,
        slippage: SlippageModel | None = None,
        fill_price: str = "open",
        journal: str | os.PathLike[str] | None = None,
        pruner: Any = None,
        checkpoint_every: str | int = "auto",
    ) -> OptimizationResult:
        """Run every trial the algorithm asks for and return the :class:`OptimizationResult`.

        ``objective`` is a metric name (its direction comes from
        :data:`rustybt_ray.metrics.METRIC_DIRECTIONS` unless ``direction`` is given), a
        callable on the metrics dict (maximized unless ``direction='minimize'``; its
        value becomes a column named after the function), or a list of these for a
        multi-objective search (see :meth:`OptimizationResult.pareto_front`).

        ``journal`` is a JSON-lines file of finished trials (see
        :mod:`rustybt_ray.optimize.journal`): trials already in it are not run again, so
        re-running a sweep that crashed, or a grid whose space was edited, runs only
        what is missing. Reused trials have ``attempts == 0`` in the table.

        ``pruner`` stops trials early (see :mod:`rustybt_ray.optimize.pruning`): an
        Optuna pruner or ``"median"``, ``"halving"``, ``"hyperband"``; by default the
        algorithm's own (``OptunaSearch(pruner=...)``). Trials are judged on the
        objective of the bars run so far at each checkpoint: ``checkpoint_every="auto"``
        after years 1, 2, 4, 8, ...; ``"year"`` after every year; or a number of bars.
        Stopped trials have status ``"pruned"``. Single objective only.
        """
        objectives = _Objectives(objective, direction)
        pruning = _pruning(pruner if pruner is not None else getattr(self.algorithm, "pruner", None),
                           objectives, checkpoint_every)
        session = SweepSession(strategy, bundle, start_date, end_date, pool=self.pool, n_jobs=self.n_jobs,
                               config=self.config, address=self.address, capital_base=capital_base,
                               commission=commission, slippage=slippage, fill_price=fill_price,
                               pruning=pruning)
        b = session.bundle
        self.algorithm.start(self.algorithm.space, objectives.pairs)
        space = self.algorithm.space
        _dry_run(strategy, b, start_date, end_date, space)  # before any actor starts: fail fast
        with session:
            job = session.identity()
            book = TrialJournal(journal)
            prefetch = getattr(self.algorithm, "prefetch_trials", 0) * max(1, len(session.pool.workers))
            source = _SearchSource(self.algorithm, objectives, book, job, self.config.return_daily_returns, prefetch)
            name0 = objectives.names[0]
            try:
                results = session.run(
                    source, total=getattr(self.algorithm, "n_total", None), desc=f"trials ({name0})",
                    progress=self.progress,
                    postfix=lambda: None if source.best is None else {f"best {name0}": f"{source.best:.4g}"},
                )
            finally:
                source.close()
                book.close()
            self.last_stats = session.stats[-1] if session.stats else None

        outcomes = {n: (o, a) for n, (o, a) in results.items()}
        outcomes.update({n: (o, 0) for n, o in source.reused.items()})
        records = []
        for number in sorted(outcomes):
            o, attempts = outcomes[number]
            records.append({
                "number": number, "params": o.params, "metrics": o.metrics, "status": o.status,
                "error": o.error, "duration_s": o.duration_s, "worker": o.worker, "attempts": attempts,
                "returns": o.returns,
            })
        found = next((r["metrics"] for r in records if r["metrics"]), None)
        metric_names = sorted(set(found or METRIC_DIRECTIONS) | set(objectives.names))
        param_names = list(space.names) if space is not None else sorted({k for r in records for k in r["params"]})
        meta = {
            "strategy": f"{strategy.__module__}.{strategy.__qualname__}",
            "bundle": b.name,
            "bundle_version": b.version,
            "start": str(start_date),
            "end": str(end_date),
            "capital_base": float(capital_base),
            "algorithm": type(self.algorithm).__name__,
            "reused_trials": len(source.reused),
            "periods_per_year": float(b.periods_per_year),
        }
        result = OptimizationResult.from_records(records, param_names, metric_names, objectives.names[0],
                                                 objectives.directions[0], meta, objectives=objectives.pairs)
        # Per-bar returns stay beside the table (one float32 array per trial), when asked for.
        result.returns = {r["number"]: r["returns"] for r in records if r["returns"] is not None}
        return result


def _pruning(pruner: Any, objectives: _Objectives, every: str | int) -> dict[str, Any] | None:
    """The session's early-stopping spec, or None when there is no pruner."""
    from rustybt_ray.engine.run import checkpoint_bars
    from rustybt_ray.optimize.pruning import make_pruner

    p = make_pruner(pruner)
    if p is None:
        return None
    if len(objectives.names) > 1:
        raise SearchSpaceError("pruning needs a single objective; drop the pruner or keep one objective")
    checkpoint_bars(np.empty(0, dtype="datetime64[ns]"), 0, 0, every)  # validates ``every`` now
    name = objectives.names[0]
    return {"pruner": p, "direction": objectives.directions[0],
            "objective": objectives.callables.get(name, name), "every": every}


def _objective(objective: Any, direction: str | None) -> tuple[str, str]:
    if callable(objective):
        name = getattr(objective, "__name__", "objective")
        if not name.isidentifier():  # a lambda's "<lambda>"
            name = "objective"
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
