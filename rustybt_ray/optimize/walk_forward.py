"""``WalkForwardOptimizer``: optimize on each window's train segment, select on validation, test out of sample.

::

    wf = WalkForwardOptimizer(param_space, WindowConfig(252, 63, 63), n_jobs=2)
    result = wf.run(MyStrategy, "demo", "2018-01-01", "2023-12-31")
    result.windows, result.oos_metrics, result.walk_forward_efficiency

Per window (see :mod:`rustybt_ray.optimize.windows` for the segments):

1. TRAIN: a fresh search algorithm (grid by default) searches the parameter space on
   the train segment;
2. VALIDATION: the ``top_k`` train trials are re-run on the validation segment and
   the one best there is selected (not the train best: this is what guards against
   picking a lucky in-sample fit). Without validation the train best is selected;
3. TEST: the selection runs once on the test segment, returning per-bar returns,
   which are stitched across windows into the out-of-sample equity curve.

All windows run at once, in one :class:`SweepSession` (one job, one pool, the bundle
shipped once): :class:`~rustybt_ray.optimize.walk_forward_source.WalkForwardSource` is
one ``TrialSource`` that asks every window's search round-robin, numbers trials
globally, and queues a window's validation trials as soon as its train search is
done and its test trial as soon as its validation is done. Trials carry their
segment's dates as overrides. The pool never waits at a window or phase boundary,
which running windows one after another would do 3 times per window.

No look-ahead: a trial of any segment runs from its segment's first bar to its last
and never sees a later bar (``data.history`` ends at the current bar; orders fill at
the next bar, so one placed on a segment's last bar never fills). ``history`` may
look back before a segment's first bar, like zipline's: a test run's indicators warm
up on the train and validation bars before it. Those bars are its past, so this is
no leak; it means a test segment's first bars trade on fully warmed-up indicators.
(A strategy that reads ``self.bundle``'s arrays directly must itself index only up
to ``data.bar_index``.) What a window selects depends only on bars up to its
validation segment's end.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import polars as pl

from rustybt_ray.cluster.protocol import TrialOutcome
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.errors import SearchSpaceError, StrategyError
from rustybt_ray.metrics import METRIC_DIRECTIONS, compute_metrics
from rustybt_ray.optimize.journal import TrialJournal
from rustybt_ray.optimize.objectives import Objective, Objectives
from rustybt_ray.optimize.preflight import Preflight, check_sweep, dry_run
from rustybt_ray.optimize.pruning import pruning_spec
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.search import GridSearchAlgorithm, SearchAlgorithm
from rustybt_ray.optimize.session import SweepSession, check_fractional_shares
from rustybt_ray.optimize.space import ParameterSpace
from rustybt_ray.optimize.walk_forward_result import WalkForwardResult, parameter_stability, walk_forward_efficiency
from rustybt_ray.optimize.walk_forward_source import TEST, TRAIN, VALIDATION, WalkForwardSource, WindowState
from rustybt_ray.optimize.windows import Window, WindowConfig, make_windows

__all__ = ["WalkForwardOptimizer", "WalkForwardResult", "WindowConfig"]

#: ``algorithm=``: a search algorithm used as a template (deep-copied per window) or a factory.
AlgorithmFactory = Union[SearchAlgorithm, Callable[[ParameterSpace], SearchAlgorithm], None]


class WalkForwardOptimizer:
    """Walk-forward analysis of a strategy: per window, search on train, select on validation, run on test.

    Args:
        param_space: the :class:`ParameterSpace` searched in every window.
        window_config: the :class:`WindowConfig` of the windows.
        algorithm: the search of each window's train segment: None (a grid over
            ``param_space``), a :class:`SearchAlgorithm` used as a template (deep-copied
            for each window, before it is used), or a callable ``space ->
            SearchAlgorithm`` called once per window.
        objective, direction: what ranks trials, as in :meth:`ParallelOptimizer.run`
            (a metric name or a callable on the metrics; the first of a list ranks).
        n_jobs: workers to start when no pool is given.
        pool / worker_pool: a :class:`WorkerPool` to run on (left open).
        config: an :class:`OptimizationConfig`.
        top_k: how many of the best train trials are re-run on validation.
        progress: show one progress bar for all windows' trials.
        address: a Ray address to connect to when Ray is not initialized.
    """

    def __init__(
        self,
        param_space: ParameterSpace,
        window_config: WindowConfig,
        algorithm: AlgorithmFactory = None,
        objective: Objective = "sharpe",
        direction: str | Sequence[str] | None = None,
        n_jobs: int | None = None,
        *,
        pool: Any = None,
        worker_pool: Any = None,
        config: OptimizationConfig | None = None,
        top_k: int = 5,
        progress: bool = True,
        address: str | None = None,
    ) -> None:
        if not isinstance(param_space, ParameterSpace):
            raise SearchSpaceError(f"param_space must be a ParameterSpace, got {param_space!r}")
        if not isinstance(window_config, WindowConfig):
            raise SearchSpaceError(f"window_config must be a WindowConfig, got {window_config!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise SearchSpaceError(f"top_k must be an int >= 1, got {top_k!r}")
        if pool is not None and worker_pool is not None and pool is not worker_pool:
            raise StrategyError("pass either pool= or worker_pool=, not both")
        if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
            raise StrategyError(f"n_jobs must be a positive int, got {n_jobs!r}")
        if algorithm is None:
            algorithm = GridSearchAlgorithm(param_space)  # warns now, once, about continuous parameters
        elif not (isinstance(algorithm, SearchAlgorithm) or callable(algorithm)):
            raise SearchSpaceError(f"algorithm must be a SearchAlgorithm or a callable space -> SearchAlgorithm, "
                                   f"got {algorithm!r}")
        self.param_space = param_space
        self.window_config = window_config
        self.algorithm = algorithm
        self.objectives = Objectives(objective, direction)
        self.n_jobs = n_jobs
        self.pool = pool if pool is not None else worker_pool
        self.config = config if config is not None else OptimizationConfig.from_env()
        self.top_k = top_k
        self.progress = progress
        self.address = address
        self.last_stats: Any = None

    def _new_algorithm(self) -> SearchAlgorithm:
        """A fresh search algorithm for one window."""
        if isinstance(self.algorithm, SearchAlgorithm):
            if self.algorithm.n_asked:
                raise SearchSpaceError("algorithm= is a template copied for every window; pass one not used yet")
            try:
                return copy.deepcopy(self.algorithm)
            except Exception as exc:  # noqa: BLE001 - e.g. a sampler holding a lock or a generator
                raise SearchSpaceError(f"cannot copy algorithm {self.algorithm!r} for each window ({exc}); "
                                       "pass a callable space -> SearchAlgorithm instead") from None
        algo = self.algorithm(self.param_space)  # type: ignore[operator]
        if not isinstance(algo, SearchAlgorithm):
            raise SearchSpaceError(f"the algorithm factory returned {algo!r}, not a SearchAlgorithm")
        return algo

    def windows(self, bundle: Bundle | str, start_date: Any = None, end_date: Any = None) -> list[Window]:
        """The windows a run over these dates would use (no backtest runs)."""
        from rustybt_ray.data import load_bundle

        b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        return make_windows(b.calendar, self.window_config, start_date, end_date)

    def validate(
        self,
        strategy: type[TradingAlgorithm],
        bundle: Bundle | str = "demo",
        start_date: Any = None,
        end_date: Any = None,
        *,
        capital_base: float = 100_000.0,
        commission: CommissionModel | None = None,
        slippage: SlippageModel | None = None,
        fill_price: str = "open",
        journal: str | os.PathLike[str] | None = None,
        pruner: Any = None,
        checkpoint_every: str | int = "auto",
        fractional_shares: bool = False,
    ) -> Preflight:
        """Check a run's arguments (the same as :meth:`run`'s) without starting Ray or writing anything.

        As :meth:`ParallelOptimizer.validate`, plus the windows (the dates must hold at
        least one) and each window's search algorithm, which is created here (fresh
        for the run: ``Preflight.algorithms``). A search that keeps its study in a
        storage is refused: windows must not share, or resume, one study. Raises a
        :class:`~rustybt_ray.errors.RustyBTError`; :meth:`run` calls it first.
        """
        check_fractional_shares(strategy, fractional_shares)
        if journal is not None and not isinstance(journal, (str, os.PathLike)):
            raise StrategyError(f"journal must be a file path, got {journal!r}")
        b, i0, i1 = check_sweep(strategy, bundle, start_date, end_date, capital_base=capital_base,
                                fill_price=fill_price, commission=commission, slippage=slippage, space=None)
        windows = make_windows(b.calendar, self.window_config, start_date, end_date)
        algorithms = [self._new_algorithm() for _ in windows]
        for algo in algorithms:
            if getattr(algo, "_storage_arg", None) is not None:
                raise SearchSpaceError("walk-forward: each window runs its own in-memory study; a search with "
                                       "storage= would make the windows share (and resume) one study")
            algo.check_objectives(self.objectives.pairs)
        space = algorithms[0].space if algorithms[0].space is not None else self.param_space
        dry_run(strategy, b, i0, space)
        pruning = pruning_spec(pruner if pruner is not None else getattr(algorithms[0], "pruner", None),
                               self.objectives, checkpoint_every)
        if pruning is not None:
            pruning["grouped"] = True  # a pruner compares trials of one window only
        return Preflight(b, i0, i1, self.objectives, space, pruning, windows, algorithms)

    def run(
        self,
        strategy: type[TradingAlgorithm],
        bundle: Bundle | str = "demo",
        start_date: Any = None,
        end_date: Any = None,
        *,
        capital_base: float = 100_000.0,
        commission: CommissionModel | None = None,
        slippage: SlippageModel | None = None,
        fill_price: str = "open",
        journal: str | os.PathLike[str] | None = None,
        pruner: Any = None,
        checkpoint_every: str | int = "auto",
        fractional_shares: bool = False,
    ) -> WalkForwardResult:
        """Run every window's train search, validation and test, all windows at once; see the module docstring.

        ``journal`` is a results journal (see :mod:`rustybt_ray.optimize.journal`): each
        trial's key holds its own segment's first and last bar, so a re-run reuses every
        trial already there (a test trial only if its returns were stored).

        ``pruner`` (by default the window algorithm's own, ``OptunaSearch(pruner=...)``)
        stops train trials early, each judged against its own window's trials only, at
        the checkpoints of ``checkpoint_every`` (see :meth:`ParallelOptimizer.run`);
        validation and test trials always run to the end.

        ``fractional_shares=True`` trades fractions of a share in every segment's run
        (as :meth:`ParallelOptimizer.run`; part of each trial's journal key).

        Everything that needs no worker is checked first (see :meth:`validate`). Every
        run uses fresh copies of the algorithm, so a second run repeats the analysis.
        """
        pre = self.validate(strategy, bundle, start_date, end_date, capital_base=capital_base,
                            commission=commission, slippage=slippage, fill_price=fill_price, journal=journal,
                            pruner=pruner, checkpoint_every=checkpoint_every,
                            fractional_shares=fractional_shares)
        b, windows, algorithms = pre.bundle, pre.windows or [], pre.algorithms
        book = TrialJournal(journal)  # reads it now: a damaged journal fails before Ray starts
        session = SweepSession(strategy, b, start_date, end_date, pool=self.pool, n_jobs=self.n_jobs,
                               config=self.config, address=self.address, capital_base=capital_base,
                               commission=commission, slippage=slippage, fill_price=fill_price,
                               pruning=pre.pruning, fractional_shares=fractional_shares)
        for algo in algorithms:
            algo.start(algo.space if algo.space is not None else self.param_space, self.objectives.pairs)
        space = algorithms[0].space
        job = session.identity()  # each phase replaces start and end with its segment's bars
        totals = [a.n_total for a in algorithms]
        with_val = self.window_config.validation_period_days > 0
        total = None if None in totals else sum(totals) + len(windows) * (1 + (self.top_k if with_val else 0))
        with session:
            source = WalkForwardSource(windows, algorithms, self.objectives, book, job, self.top_k,
                                       self.config.return_daily_returns, space, coordinator=session.coordinator)
            try:
                results = session.run(source, total=total, desc=f"walk-forward ({len(windows)} windows)",
                                      progress=self.progress)
            finally:
                book.close()
            self.last_stats = session.stats[-1] if session.stats else None
        meta = {
            "strategy": f"{strategy.__module__}.{strategy.__qualname__}", "bundle": b.name,
            "bundle_version": b.version, "start": str(start_date), "end": str(end_date),
            "capital_base": float(capital_base), "fractional_shares": bool(fractional_shares),
            "window_config": repr(self.window_config),
            "algorithm": type(algorithms[0]).__name__, "top_k": self.top_k,
            "periods_per_year": float(b.periods_per_year),
        }
        return _assemble(source, results, b, list(space.names) if space is not None else [], float(capital_base),
                         meta, self.last_stats)


def _date(ts: Any) -> Any:
    return None if ts is None else np.datetime64(ts, "ns")


def _assemble(source: WalkForwardSource, results: dict[int, tuple[TrialOutcome, int]], b: Bundle,
              param_names: list[str], capital_base: float, meta: dict[str, Any], stats: Any) -> WalkForwardResult:
    """Build the :class:`WalkForwardResult` from the finished source."""
    objectives = source.objectives
    obj, direction = objectives.names[0], objectives.directions[0]
    fixed = {"window", "status", "selected_by", "train_rank", "n_train_trials", "candidate", "selected"}
    fixed |= {f"{s}_{e}" for s in (TRAIN, VALIDATION, TEST) for e in ("start", "end")}
    fixed |= {f"{p}_{n}" for p in (TRAIN, VALIDATION) for n in [*objectives.names, "cagr"]}
    fixed |= {f"test_{n}" for n in [*METRIC_DIRECTIONS, *objectives.names]}
    cols = {n: (f"param_{n}" if n in fixed else n) for n in param_names}
    rows, val_rows, timeline, train_results, pieces = [], [], [], [], []
    for st in source.states:
        w = st.window
        train = st.phases[TRAIN].outcomes()
        row: dict[str, Any] = {"window": w.index, "status": st.status, "selected_by": st.selected_by}
        for name in (TRAIN, VALIDATION, TEST):
            span = w.segments().get(name)
            row[f"{name}_start"] = _date(span.first if span else None)
            row[f"{name}_end"] = _date(span.last if span else None)
        row["n_train_trials"] = len(train)
        row["train_rank"] = st.chosen
        chosen = st.candidates[st.chosen] if st.chosen is not None else None
        for n, c in cols.items():
            row[c] = chosen[1].get(n) if chosen else None
        tm = train[chosen[0]].metrics if chosen else None
        val = st.phases[VALIDATION].outcomes() if VALIDATION in st.phases else {}
        vm = val[st.chosen].metrics if chosen and st.chosen in val else None
        for n in objectives.names:
            row[f"train_{n}"] = (tm or {}).get(n)
            row[f"validation_{n}"] = (vm or {}).get(n)
        row["train_cagr"] = (tm or {}).get("cagr")
        test = st.phases[TEST].outcomes().get(0) if TEST in st.phases else None
        tmet = test.metrics if test is not None and test.metrics else {}
        for n in [*METRIC_DIRECTIONS, *[x for x in objectives.names if x not in METRIC_DIRECTIONS]]:
            row[f"test_{n}"] = tmet.get(n)
        rows.append(row)
        for i, (_, params, tv) in enumerate(st.candidates):
            vo = val.get(i)
            vr = {"window": w.index, "candidate": i, **{c: params.get(n) for n, c in cols.items()},
                  f"train_{obj}": tv, f"validation_{obj}": source.value(vo) if vo is not None else None,
                  "selected": i == st.chosen}
            val_rows.append(vr)
        timeline.append({"window": w.index, "first_dispatch_s": st.first_dispatch, "last_result_s": st.last_result,
                         "trials_run": sum(len(p.told) for p in st.phases.values()),
                         "trials_reused": sum(len(p.source.reused) for p in st.phases.values()),
                         "work_s": sum(o.duration_s for p in st.phases.values() for o in p.told.values())})
        n = len(w.test)
        r = np.asarray(test.returns, dtype=np.float64) if st.status == "ok" and test is not None else np.zeros(n)
        if r.shape != (n,):
            raise RuntimeError(f"window {w.index}: test run returned {r.shape[0]} returns for {n} bars")
        pieces.append(pl.DataFrame({"date": b.calendar[w.test.start:w.test.stop], "window": [w.index] * n,
                                    "returns": r}))
        train_results.append(_train_result(st, results, param_names, objectives, meta))
    bad = [st.window.index for st in source.states if st.status != "ok"]
    if bad:
        warnings.warn(f"walk-forward windows {bad} have no test run (no complete train trial, or the test trial "
                      "failed); their out-of-sample returns are zeros (flat)", RuntimeWarning, stacklevel=3)
    windows = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col(f"{s}_{e}").cast(pl.Datetime("ns")) for s in (TRAIN, VALIDATION, TEST) for e in ("start", "end"))
    oos = pl.concat(pieces).with_columns(pl.col("date").cast(pl.Datetime("ns")), pl.col("window").cast(pl.Int64))
    returns = oos["returns"].to_numpy()
    equity = capital_base * np.cumprod(1.0 + returns)
    oos_metrics = compute_metrics(equity, capital_base, b.periods_per_year)
    ok = windows.filter(pl.col("status") == "ok")
    wfe = walk_forward_efficiency(ok["train_cagr"].to_list(), ok["test_cagr"].to_list())
    meta = dict(meta, oos_first=str(oos["date"][0]).removesuffix(" 00:00:00"),
                oos_last=str(oos["date"][-1]).removesuffix(" 00:00:00"))
    validation = pl.DataFrame(val_rows, infer_schema_length=None) if val_rows else pl.DataFrame(
        schema={"window": pl.Int64, "candidate": pl.Int64, f"train_{obj}": pl.Float64,
                f"validation_{obj}": pl.Float64, "selected": pl.Boolean})
    return WalkForwardResult(
        windows=windows, oos_returns=oos, oos_metrics=oos_metrics, walk_forward_efficiency=wfe,
        parameter_stability=parameter_stability(windows.filter(pl.col("status") != "no_selection"), cols),
        train_results=train_results, validation=validation, timeline=pl.DataFrame(timeline),
        window_specs=[st.window for st in source.states], objective=obj, direction=direction,
        param_columns=cols, meta=meta, stats=stats,
    )


def _train_result(st: WindowState, results: dict[int, tuple[TrialOutcome, int]], param_names: list[str],
                  objectives: Objectives, meta: dict[str, Any]) -> OptimizationResult:
    """One window's train trials as an :class:`OptimizationResult` (numbers local to the window)."""
    phase = st.phases[TRAIN]
    records = []
    for number, o in sorted(phase.outcomes().items()):
        g = phase.global_of.get(number)
        attempts = results[g][1] if g is not None and number in phase.told and g in results else 0
        records.append({"number": number, "params": o.params, "metrics": o.metrics, "status": o.status,
                        "error": o.error, "duration_s": o.duration_s, "worker": o.worker, "attempts": attempts})
    found = next((r["metrics"] for r in records if r["metrics"]), None)
    metric_names = sorted(set(found or METRIC_DIRECTIONS) | set(objectives.names))
    span = st.window.train
    m = dict(meta, start=str(span.first), end=str(span.last), window=st.window.index)
    result = OptimizationResult.from_records(records, param_names, metric_names, objectives.names[0],
                                             objectives.directions[0], m, objectives=objectives.pairs)
    # Per-bar returns of train trials, when the config asked for them (return_daily_returns).
    result.returns = {n: o.returns for n, o in phase.outcomes().items() if o.returns is not None}
    return result
