"""``ParallelOptimizer``: a search algorithm, a worker pool and the scheduler, as one call.

::

    optimizer = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=2)
    result = optimizer.run(MyStrategy, "demo", "2015-01-01", "2024-12-31", objective="sharpe")
    result.best, result.top(5)

The driver first checks everything that needs no worker (:meth:`ParallelOptimizer.validate`:
the run's arguments, the objectives, the pruner, the parameter names with a one-bar
dry run), then loads the bundle once, puts it in Ray's object store once (the pool's
:class:`BundleStore`, keyed by the bundle's SHA-256), ships the strategy class to
every actor once per run, and streams results back. A pool passed in (``pool=`` or
the guide's ``worker_pool=``) outlives the run; one the optimizer creates is closed
at the end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rustybt_ray.config import OptimizationConfig
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.errors import OutputError, SearchSpaceError, StrategyError
from rustybt_ray.files import ensure_directory, file_mode
from rustybt_ray.metrics import METRIC_DIRECTIONS
from rustybt_ray.optimize.journal import TrialJournal
from rustybt_ray.optimize.objectives import Objective, Objectives
from rustybt_ray.optimize.preflight import Preflight, check_sweep
from rustybt_ray.optimize.pruning import pruning_spec
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.search import GridSearchAlgorithm, SearchAlgorithm
from rustybt_ray.optimize.session import (
    SweepSession,
    check_fractional_shares,
    last_pool,
)
from rustybt_ray.optimize.space import ParameterSpace
from rustybt_ray.optimize.store import ResultStore
from rustybt_ray.optimize.trial_source import SearchSource

__all__ = ["Objective", "ParallelOptimizer", "last_pool"]


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
        self._runs = 0  # runs that started the algorithm: the next one rewinds it first

    def validate(
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
        store: str | os.PathLike[str] | None = None,
        fractional_shares: bool = False,
    ) -> Preflight:
        """Check a run's arguments (the same as :meth:`run`'s) without starting Ray or writing anything.

        Checks the strategy class, the bundle (loaded by name), the dates (``start <=
        end``, at least one bar), ``capital_base`` (a positive finite number),
        ``fill_price``, the cost models, the objectives and their directions (also
        against the algorithm, e.g. CMA-ES has one objective), the pruner and
        ``checkpoint_every``, ``fractional_shares`` (a bool; True is refused for a
        :class:`~rustybt_ray.vector.VectorStrategy`, whose kernel trades whole shares),
        and the parameter names (a one-bar dry run on the driver).
        Raises a :class:`~rustybt_ray.errors.RustyBTError` on the first problem;
        returns the :class:`Preflight` that :meth:`run` goes on with (the loaded
        bundle, so it is not loaded twice). :meth:`run` calls it first.
        """
        check_fractional_shares(strategy, fractional_shares)
        objectives = Objectives(objective, direction)
        self.algorithm.check_objectives(objectives.pairs)
        pruning = pruning_spec(pruner if pruner is not None else getattr(self.algorithm, "pruner", None),
                               objectives, checkpoint_every)
        if journal is not None and not isinstance(journal, (str, os.PathLike)):
            raise StrategyError(f"journal must be a file path, got {journal!r}")
        if store is not None and not isinstance(store, (str, os.PathLike)):
            raise StrategyError(f"store must be a directory path, got {store!r}")
        if store is not None and journal is not None:
            raise StrategyError("pass journal= or store=, not both: a store is its sweep's journal "
                                "(running the sweep again with the same store= resumes it)")
        space = self.algorithm.space
        b, i0, i1 = check_sweep(strategy, bundle, start_date, end_date, capital_base=capital_base,
                                fill_price=fill_price, commission=commission, slippage=slippage, space=space)
        return Preflight(b, i0, i1, objectives, space, pruning)

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
        store: str | os.PathLike[str] | None = None,
        fractional_shares: bool = False,
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

        ``store`` is a directory that keeps the sweep out of core (see
        :mod:`rustybt_ray.optimize.store`): trials are written to Parquet shards and
        their returns to a float32 file as results arrive, and the result reads them
        lazily (:meth:`OptimizationResult.scan`), so the driver's memory stays flat for a
        million trials. The store is also the sweep's journal: running again with the
        same ``store`` resumes it. A sweep of at least ``OptimizationConfig.spill_trials``
        trials with neither ``journal`` nor ``store`` gets a new store under
        ``OptimizationConfig.results_dir`` (a warning names it).

        ``fractional_shares=True`` runs every trial with fractions of a share, as
        ``run_metrics(..., fractional_shares=True)``; it is part of each trial's journal
        key, so a journal or store of a whole-share sweep is not reused for it.

        Everything that needs no worker is checked first, before Ray starts or anything
        is written (see :meth:`validate`).

        **Running again.** A second ``run`` of the same optimizer searches again: grid
        and random searches start over from their first trial (the same trials, the
        same results), and an Optuna search continues its study for another
        ``n_trials`` (as ``study.optimize`` called twice does). An algorithm of your
        own must implement :meth:`SearchAlgorithm.rewind` to run twice.
        """
        pre = self.validate(strategy, bundle, start_date, end_date, objective, direction=direction,
                            capital_base=capital_base, commission=commission, slippage=slippage,
                            fill_price=fill_price, journal=journal, pruner=pruner,
                            checkpoint_every=checkpoint_every, store=store,
                            fractional_shares=fractional_shares)
        objectives, b = pre.objectives, pre.bundle
        session = SweepSession(strategy, b, start_date, end_date, pool=self.pool, n_jobs=self.n_jobs,
                               config=self.config, address=self.address, capital_base=capital_base,
                               commission=commission, slippage=slippage, fill_price=fill_price,
                               pruning=pre.pruning, fractional_shares=fractional_shares)
        if self._runs or self.algorithm.n_asked:
            self.algorithm.rewind()
        self.algorithm.start(self.algorithm.space, objectives.pairs)
        self._runs += 1
        space = self.algorithm.space
        total = self.algorithm.n_total  # read before the prefetch thread starts (threading contract)
        job = session.identity()
        if store is None and journal is None:
            store = spill_directory(self.config, getattr(self.algorithm, "max_trials", total))
        # Opened now: a damaged journal, or a store of another sweep, fails before Ray starts.
        book: TrialJournal | ResultStore = (
            TrialJournal(journal) if store is None
            else ResultStore(store, job=job, param_names=list(space.names) if space is not None else None,
                             flush_seconds=self.config.store_commit_s))
        with session:
            prefetch = getattr(self.algorithm, "prefetch_trials", 0) * max(1, len(session.pool.workers))
            source = SearchSource(self.algorithm, objectives, book, job, self.config.return_daily_returns, prefetch)
            name0 = objectives.names[0]
            try:
                results = session.run(
                    source, total=total, desc=f"trials ({name0})",
                    progress=self.progress,
                    postfix=lambda: None if source.best is None else {f"best {name0}": f"{source.best:.4g}"},
                    keep_results=store is None,
                )
            finally:
                source.close()
                book.close()
            self.last_stats = session.stats[-1] if session.stats else None
        meta = {
            "strategy": f"{strategy.__module__}.{strategy.__qualname__}",
            "bundle": b.name,
            "bundle_version": b.version,
            "start": str(start_date),
            "end": str(end_date),
            "capital_base": float(capital_base),
            "fractional_shares": bool(fractional_shares),
            "algorithm": type(self.algorithm).__name__,
            "reused_trials": source.n_reused,
            "periods_per_year": float(b.periods_per_year),
        }
        if isinstance(book, ResultStore):
            names = sorted(set(book.metric_names or METRIC_DIRECTIONS) | set(objectives.names))
            return OptimizationResult.from_store(book, objective=objectives.names[0],
                                                 direction=objectives.directions[0], meta=meta,
                                                 objectives=objectives.pairs, metric_names=names)

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
        result = OptimizationResult.from_records(records, param_names, metric_names, objectives.names[0],
                                                 objectives.directions[0], meta, objectives=objectives.pairs)
        # Per-bar returns stay beside the table (one float32 array per trial), when asked for.
        result.returns = {r["number"]: r["returns"] for r in records if r["returns"] is not None}
        return result


def spill_directory(config: Any, n_trials: int | None) -> Path | None:
    """A new store directory for a sweep of ``n_trials`` when ``config.spill_trials`` says it is too big for memory.

    None for smaller sweeps (or unknown size, or ``spill_trials=None``). The directory is
    created under ``config.results_dir`` (the system's temporary directory when None) and
    named in a warning, since it outlives the process.
    """
    import tempfile
    import warnings

    limit = getattr(config, "spill_trials", None)
    if limit is None or n_trials is None or n_trials < limit:
        return None
    parent = getattr(config, "results_dir", None)
    if parent is not None:
        ensure_directory(parent)
    try:
        path = Path(tempfile.mkdtemp(prefix="rustybt-sweep-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create a results store under {parent or tempfile.gettempdir()}: "
                          f"{exc.strerror or exc}") from None
    mode = file_mode()  # mkdtemp's 0700 would hide the results from colleagues on a shared file system
    os.chmod(path, mode | ((mode & 0o444) >> 2))
    warnings.warn(f"a sweep of {n_trials} trials keeps its results out of core, in {path} "
                  f"(OptimizationConfig.spill_trials={limit}); pass store= to choose the directory, "
                  "OptimizationResult.open() reads it back", UserWarning, stacklevel=3)
    return path
