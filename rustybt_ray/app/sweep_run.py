"""Running a sweep file end to end, and reading back what it wrote: ``rustybt-ray optimize`` and ``results``.

An output directory holds:

- ``sweep.json``: the sweep as given, written first (``results`` of a running sweep reads it);
- ``journal.jsonl``: every finished trial as it arrives (resume, and live ``results``);
- ``results.parquet``: the trials table (:meth:`OptimizationResult.read_parquet`);
- ``walk_forward/``: the walk-forward tables, for sweeps with ``[walk_forward]``;
- ``summary.json``: best trial, overfitting statistics, timings, written last;
- ``study.db``: the Optuna study, for Optuna algorithms (unless ``search.storage`` says else);
- ``plots/*.png``: heatmap, equity of the best trial vs buy-and-hold, walk-forward curve
  (with the ``plots`` extra installed).

Every file is written atomically (temp file, then rename).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rustybt_ray.errors import ConfigError, RustyBTError
from rustybt_ray.files import ensure_directory, write_json_atomic
from rustybt_ray.app.sweep_config import SweepConfig


@dataclass
class SweepReport:
    """What :func:`run_sweep` produced: the result object, the summary written, and the files."""

    output: Path
    summary: dict[str, Any]
    result: Any
    files: list[Path] = field(default_factory=list)


def _describe(cfg: SweepConfig) -> dict[str, Any]:
    return {
        "strategy": cfg.strategy, "bundle": cfg.bundle, "start": cfg.start, "end": cfg.end,
        "capital": cfg.capital, "fractional_shares": cfg.fractional_shares, "objective": cfg.objective,
        "directions": cfg.directions,
        "search": cfg.search, "parameters": cfg.parameters, "constraints": cfg.constraints,
        "walk_forward": cfg.walk_forward, "source": str(cfg.source) if cfg.source else None,
    }


def run_sweep(cfg: SweepConfig, *, resume: bool = False, progress: bool = True, plots: bool = True) -> SweepReport:
    """Run the sweep ``cfg`` describes and write its output directory; see the module docstring.

    Without ``resume``, an output directory that already holds a sweep is an error (so
    a typo never mixes two sweeps); with it, finished trials are taken from the
    journal (and the Optuna study) and only the rest run.

    Everything that needs no worker (the strategy, bundle, dates, capital, costs,
    objectives, search options, parameter names) is checked before Ray starts and
    before anything is written: a refused sweep leaves the output directory as it was.
    """
    from rustybt_ray.engine.loading import load_strategy

    out = cfg.output
    if (out / "sweep.json").exists() and not resume:
        raise ConfigError(f"output directory {out} already holds a sweep: pass --resume to continue it, "
                          "or set another output")
    strategy = load_strategy(cfg.strategy)
    space = cfg.build_space()
    commission, slippage = cfg.build_costs()
    config = cfg.build_optimization_config()
    directions = cfg.directions if cfg.directions is None or len(cfg.directions) > 1 else cfg.directions[0]
    objective: Any = cfg.objective if len(cfg.objective) > 1 else cfg.objective[0]
    prepare = _walk_forward if cfg.walk_forward is not None else _search
    launch = prepare(cfg, strategy, space, config, objective, directions, commission, slippage, progress, plots)
    ensure_directory(out)
    write_json_atomic(out / "sweep.json", {**_describe(cfg), "status": "running", "started": time.time()})
    t0 = time.perf_counter()
    result, summary, files = launch()
    summary = {**_describe(cfg), **summary, "status": "finished", "wall_s": time.perf_counter() - t0}
    files.append(write_json_atomic(out / "summary.json", summary))
    return SweepReport(out, summary, result, files)


#: What ``_search`` and ``_walk_forward`` return once validated: run the sweep, give ``(result, summary, files)``.
Launch = Callable[[], tuple[Any, dict[str, Any], list[Path]]]


def _search(cfg: SweepConfig, strategy: type, space: Any, config: Any, objective: Any, directions: Any,
            commission: Any, slippage: Any, progress: bool, plots: bool) -> Launch:
    """Validate a search sweep (nothing written, no Ray) and return what runs it."""
    from rustybt_ray.errors import OverfittingError
    from rustybt_ray.optimize import ParallelOptimizer

    out = cfg.output
    algorithm = cfg.build_algorithm(space, resume=True)
    opt = ParallelOptimizer(algorithm, n_jobs=cfg.workers, config=config, address=cfg.address, progress=progress)
    kwargs: dict[str, Any] = dict(direction=directions, capital_base=cfg.capital, commission=commission,
                                  slippage=slippage, fill_price=cfg.fill_price, journal=out / "journal.jsonl",
                                  checkpoint_every=cfg.search.get("checkpoint_every", "auto"),
                                  fractional_shares=cfg.fractional_shares)
    pre = opt.validate(strategy, cfg.bundle, cfg.start, cfg.end, objective, **kwargs)

    def launch() -> tuple[Any, dict[str, Any], list[Path]]:
        result = opt.run(strategy, pre.bundle, cfg.start, cfg.end, objective, **kwargs)
        files = [result.to_parquet(out / "results.parquet")]
        try:
            overfit: dict[str, Any] | None = result.overfitting()
        except (OverfittingError, RustyBTError):
            overfit = None
        stats = opt.last_stats
        summary = {
            "kind": "search", "n_trials": len(result), "n_complete": result.n_complete,
            "n_failed": result.n_failed, "n_pruned": result.n_pruned,
            "reused_trials": result.meta.get("reused_trials", 0), "best": result.best, "overfitting": overfit,
            "pareto_front": result.pareto_front()["number"].to_list() if len(result.objectives) > 1 else None,
            "scheduler": None if stats is None else {"trials_run": stats.trials, "batches": stats.batches,
                                                     "driver_busy_s": stats.driver_busy_s, "wall_s": stats.wall_s},
        }
        if plots:
            files += _search_plots(cfg, strategy, result, commission, slippage)
        return result, summary, files
    return launch


def _walk_forward(cfg: SweepConfig, strategy: type, space: Any, config: Any, objective: Any, directions: Any,
                  commission: Any, slippage: Any, progress: bool, plots: bool) -> Launch:
    """Validate a walk-forward sweep (nothing written, no Ray) and return what runs it.

    Each window gets a fresh search from the algorithm registry, with the sweep's
    ``pruner``, ``constraints`` and ``enqueue``; a shared ``storage`` is refused.
    """
    from rustybt_ray.optimize import WalkForwardOptimizer, WindowConfig

    wf = dict(cfg.walk_forward or {})
    top_k = int(wf.pop("top_k", 5))
    try:
        windows = WindowConfig(**wf)
    except TypeError as exc:
        raise ConfigError(f"walk_forward: {exc}") from None
    factory = cfg.build_window_factory()
    opt = WalkForwardOptimizer(space, windows, algorithm=factory, objective=objective, direction=directions,
                               n_jobs=cfg.workers, config=config, top_k=top_k, progress=progress,
                               address=cfg.address)
    kwargs: dict[str, Any] = dict(capital_base=cfg.capital, commission=commission, slippage=slippage,
                                  fill_price=cfg.fill_price, journal=cfg.output / "journal.jsonl",
                                  checkpoint_every=cfg.search.get("checkpoint_every", "auto"),
                                  fractional_shares=cfg.fractional_shares)
    pre = opt.validate(strategy, cfg.bundle, cfg.start, cfg.end, **kwargs)

    def launch() -> tuple[Any, dict[str, Any], list[Path]]:
        result = opt.run(strategy, pre.bundle, cfg.start, cfg.end, **kwargs)
        files = [result.to_parquet(cfg.output / "walk_forward")]
        summary = {
            "kind": "walk_forward", "windows": result.windows.height, "oos_metrics": result.oos_metrics,
            "walk_forward_efficiency": result.walk_forward_efficiency, "best_params": result.best_params,
        }
        if plots:
            files += try_plot(lambda: walk_forward_plot(cfg.output / "plots" / "walk_forward.png", result))
        return result, summary, files
    return launch


def walk_forward_plot(path: Path, result: Any) -> Path:
    """The stitched out-of-sample equity of a :class:`WalkForwardResult`, test windows shaded, as a PNG."""
    from rustybt_ray.app.plots import walk_forward_curve

    oos = result.oos_returns
    bounds = [(w["test_start"], w["test_end"]) for w in result.windows.iter_rows(named=True)] \
        if "test_start" in result.windows.columns else None
    return walk_forward_curve(oos["returns"].to_numpy(), oos["date"].to_numpy(), bounds, path)


def _search_plots(cfg: SweepConfig, strategy: type, result: Any, commission: Any, slippage: Any) -> list[Path]:
    from rustybt_ray.data import load_bundle
    from rustybt_ray.engine import run_metrics

    files: list[Path] = []
    best = result.best
    if best is None:
        return files
    numeric = [n for n in result.param_names if result.trials[n].dtype.is_numeric()]
    if len(numeric) >= 2:
        def heat() -> Path:
            from rustybt_ray.app.plots import grid_heatmap

            return grid_heatmap(result, numeric[0], numeric[1], path=cfg.output / "plots" / "heatmap.png")
        files += try_plot(heat)

    def equity() -> Path:
        from rustybt_ray.app.plots import buy_and_hold_returns, equity_curve

        b = load_bundle(cfg.bundle)
        returns = result.returns.get(best["number"])
        if returns is None:  # returns were not kept: one more backtest, on the driver
            _, returns = run_metrics(strategy, b, cfg.start, cfg.end, cfg.capital, best["params"],
                                     commission=commission, slippage=slippage, fill_price=cfg.fill_price,
                                     with_returns=True, fractional_shares=cfg.fractional_shares)
        i0, i1 = b.index_range(cfg.start, cfg.end)
        return equity_curve(np.asarray(returns, dtype=np.float64), b.calendar[i0:i1],
                            buy_and_hold_returns(b, cfg.start, cfg.end),
                            title=f"Best trial #{best['number']} {best['params']}",
                            path=cfg.output / "plots" / "equity.png")
    files += try_plot(equity)
    return files


def try_plot(make: Any) -> list[Path]:
    """A plot when matplotlib is installed; without it, no plot (the CLI says how to get them)."""
    from rustybt_ray.app.plots import PlotDependencyError

    try:
        return [Path(make())]
    except PlotDependencyError:
        return []


# -- reading an output directory back --------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`ConfigError` naming the file when it is damaged or not an object."""
    try:
        value = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is damaged (not JSON: {exc}); was the sweep's disk full, or the file edited?") \
            from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} is damaged: a JSON object was expected, found {type(value).__name__}")
    return value


def _check_sweep_record(path: Path, sweep: dict[str, Any]) -> None:
    missing = [k for k in ("strategy", "bundle", "objective") if k not in sweep]
    if missing:
        raise ConfigError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    objective = sweep["objective"]
    if not isinstance(objective, list) or not objective or not all(isinstance(o, str) for o in objective):
        raise ConfigError(f"{path} is damaged: objective must be a list of metric names, got {objective!r}")
    dirs = sweep.get("directions")
    if dirs is not None and (not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs)):
        raise ConfigError(f"{path} is damaged: directions must be a list of strings, got {dirs!r}")


def read_results(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], pl.DataFrame, dict[str, Any] | None]:
    """``(sweep, trials, summary)`` of a finished or running sweep's directory.

    ``trials`` comes from ``results.parquet`` when the sweep finished, else from the
    journal (one row per trial finished so far); ``summary`` is None while it runs.
    A damaged or incomplete file is a :class:`ConfigError` naming it.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d} is not a directory" if d.exists() else f"{d} does not exist")
    if not (d / "sweep.json").is_file():
        raise ConfigError(f"{d} is not a sweep output directory (no sweep.json)")
    sweep = _read_json(d / "sweep.json")
    _check_sweep_record(d / "sweep.json", sweep)
    summary = _read_json(d / "summary.json") if (d / "summary.json").exists() else None
    if (d / "results.parquet").exists() and summary is not None:
        from rustybt_ray.optimize import OptimizationResult

        try:
            trials = OptimizationResult.read_parquet(d / "results.parquet").trials
        except RustyBTError:
            raise
        except (ValueError, pl.exceptions.PolarsError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ConfigError(f"{d / 'results.parquet'} is damaged: {exc}") from None
        return sweep, trials, summary
    rows = []
    journal = d / "journal.jsonl"
    if journal.exists():
        from rustybt_ray.optimize.journal import TrialJournal

        j = TrialJournal(journal)
        for key in j.keys():
            rec = j.get(key)
            assert rec is not None
            params = rec.get("params") if isinstance(rec.get("params"), dict) else {}
            metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
            rows.append({**params, **metrics, "status": rec.get("status")})
    return sweep, pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(), summary


def top_table(trials: pl.DataFrame, objective: str, direction: str, k: int = 10) -> pl.DataFrame:
    """The ``k`` best complete trials by ``objective`` (NaN last)."""
    if trials.height == 0 or objective not in trials.columns:
        return trials.head(0)
    done = trials.filter(pl.col("status") == "complete") if "status" in trials.columns else trials
    return done.with_columns(pl.col(objective).fill_nan(None)).sort(
        objective, descending=direction == "maximize", nulls_last=True).head(k)
