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
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rustybt_ray.errors import ConfigError, RustyBTError
from rustybt_ray.files import write_json_atomic
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
        "capital": cfg.capital, "objective": cfg.objective, "directions": cfg.directions,
        "search": cfg.search, "parameters": cfg.parameters, "constraints": cfg.constraints,
        "walk_forward": cfg.walk_forward, "source": str(cfg.source) if cfg.source else None,
    }


def run_sweep(cfg: SweepConfig, *, resume: bool = False, progress: bool = True, plots: bool = True) -> SweepReport:
    """Run the sweep ``cfg`` describes and write its output directory; see the module docstring.

    Without ``resume``, an output directory that already holds a sweep is an error (so
    a typo never mixes two sweeps); with it, finished trials are taken from the
    journal (and the Optuna study) and only the rest run.
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
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sweep.json", {**_describe(cfg), "status": "running", "started": time.time()})
    directions = cfg.directions if cfg.directions is None or len(cfg.directions) > 1 else cfg.directions[0]
    objective: Any = cfg.objective if len(cfg.objective) > 1 else cfg.objective[0]
    t0 = time.perf_counter()
    if cfg.walk_forward is not None:
        result, summary, files = _walk_forward(cfg, strategy, space, config, objective, directions,
                                               commission, slippage, progress, plots)
    else:
        result, summary, files = _search(cfg, strategy, space, config, objective, directions,
                                         commission, slippage, progress, plots)
    summary = {**_describe(cfg), **summary, "status": "finished", "wall_s": time.perf_counter() - t0}
    files.append(write_json_atomic(out / "summary.json", summary))
    return SweepReport(out, summary, result, files)


def _search(cfg: SweepConfig, strategy: type, space: Any, config: Any, objective: Any, directions: Any,
            commission: Any, slippage: Any, progress: bool, plots: bool) -> tuple[Any, dict[str, Any], list[Path]]:
    from rustybt_ray.errors import OverfittingError
    from rustybt_ray.optimize import ParallelOptimizer

    out = cfg.output
    algorithm = cfg.build_algorithm(space, resume=True)
    opt = ParallelOptimizer(algorithm, n_jobs=cfg.workers, config=config, address=cfg.address, progress=progress)
    result = opt.run(strategy, cfg.bundle, cfg.start, cfg.end, objective, direction=directions,
                     capital_base=cfg.capital, commission=commission, slippage=slippage, fill_price=cfg.fill_price,
                     journal=out / "journal.jsonl", checkpoint_every=cfg.search.get("checkpoint_every", "auto"))
    files = [result.to_parquet(out / "results.parquet")]
    try:
        overfit: dict[str, Any] | None = result.overfitting()
    except (OverfittingError, RustyBTError):
        overfit = None
    stats = opt.last_stats
    summary = {
        "kind": "search", "n_trials": len(result), "n_complete": result.n_complete, "n_failed": result.n_failed,
        "n_pruned": result.n_pruned, "reused_trials": result.meta.get("reused_trials", 0),
        "best": result.best, "overfitting": overfit,
        "pareto_front": result.pareto_front()["number"].to_list() if len(result.objectives) > 1 else None,
        "scheduler": None if stats is None else {"trials_run": stats.trials, "batches": stats.batches,
                                                 "driver_busy_s": stats.driver_busy_s, "wall_s": stats.wall_s},
    }
    if plots:
        files += _search_plots(cfg, strategy, result, commission, slippage)
    return result, summary, files


def _walk_forward(cfg: SweepConfig, strategy: type, space: Any, config: Any, objective: Any, directions: Any,
                  commission: Any, slippage: Any, progress: bool, plots: bool) -> tuple[Any, dict[str, Any], list[Path]]:
    from rustybt_ray.optimize import WalkForwardOptimizer, WindowConfig

    wf = dict(cfg.walk_forward or {})
    top_k = int(wf.pop("top_k", 5))
    try:
        windows = WindowConfig(**wf)
    except TypeError as exc:
        raise ConfigError(f"walk_forward: {exc}") from None
    search = dict(cfg.search)
    if search["algorithm"] in ("grid", "random"):
        factory = lambda s: cfg.build_algorithm(s, resume=True)  # noqa: E731
    else:
        # One in-memory study per window: windows must not share (or resume) one study.
        from rustybt_ray.optimize.optuna_search import OptunaSearch

        sampler = "random" if search["algorithm"] == "optuna-random" else search["algorithm"]
        factory = lambda s: OptunaSearch(s, sampler=sampler, n_trials=search.get("n_trials"),  # noqa: E731
                                         timeout=search.get("timeout"), seed=search.get("seed"))
    opt = WalkForwardOptimizer(space, windows, algorithm=factory, objective=objective, direction=directions,
                               n_jobs=cfg.workers, config=config, top_k=top_k, progress=progress,
                               address=cfg.address)
    result = opt.run(strategy, cfg.bundle, cfg.start, cfg.end, capital_base=cfg.capital, commission=commission,
                     slippage=slippage, fill_price=cfg.fill_price, journal=cfg.output / "journal.jsonl")
    files = [result.to_parquet(cfg.output / "walk_forward")]
    summary = {
        "kind": "walk_forward", "windows": result.windows.height, "oos_metrics": result.oos_metrics,
        "walk_forward_efficiency": result.walk_forward_efficiency, "best_params": result.best_params,
    }
    if plots:
        files += try_plot(lambda: walk_forward_plot(cfg.output / "plots" / "walk_forward.png", result))
    return result, summary, files


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
                                     with_returns=True)
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


def read_results(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], pl.DataFrame, dict[str, Any] | None]:
    """``(sweep, trials, summary)`` of a finished or running sweep's directory.

    ``trials`` comes from ``results.parquet`` when the sweep finished, else from the
    journal (one row per trial finished so far); ``summary`` is None while it runs.
    """
    d = Path(directory)
    if not (d / "sweep.json").exists():
        raise ConfigError(f"{d} is not a sweep output directory (no sweep.json)")
    sweep = json.loads((d / "sweep.json").read_text())
    summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").exists() else None
    if (d / "results.parquet").exists() and summary is not None:
        from rustybt_ray.optimize import OptimizationResult

        return sweep, OptimizationResult.read_parquet(d / "results.parquet").trials, summary
    rows = []
    journal = d / "journal.jsonl"
    if journal.exists():
        from rustybt_ray.optimize.journal import TrialJournal

        j = TrialJournal(journal)
        for key in j.keys():
            rec = j.get(key)
            assert rec is not None
            rows.append({**rec["params"], **(rec.get("metrics") or {}), "status": rec["status"]})
    return sweep, pl.DataFrame(rows) if rows else pl.DataFrame(), summary


def top_table(trials: pl.DataFrame, objective: str, direction: str, k: int = 10) -> pl.DataFrame:
    """The ``k`` best complete trials by ``objective`` (NaN last)."""
    if trials.height == 0 or objective not in trials.columns:
        return trials.head(0)
    done = trials.filter(pl.col("status") == "complete") if "status" in trials.columns else trials
    return done.with_columns(pl.col(objective).fill_nan(None)).sort(
        objective, descending=direction == "maximize", nulls_last=True).head(k)
