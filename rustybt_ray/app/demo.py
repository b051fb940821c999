"""``rustybt-ray demo``: a representative sweep on the embedded demo bundle, offline, in under a minute.

Three stages on one persistent worker pool (the bundle goes to the object store once):

1. a grid search of the SMA crossover (a few hundred trials, moving averages from the
   workers' array cache), with its overfitting statistics;
2. a TPE (Bayesian) sweep over a wider space, with median pruning;
3. a short walk-forward analysis (train, validate, test on rolling windows).

It prints a top-10 table, the best parameters with their Deflated Sharpe Ratio and
PBO, the walk-forward summary, and writes Parquet results and PNG plots to an output
directory it names at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl

from rustybt_ray.errors import WorkerCountError
from rustybt_ray.files import ensure_directory, write_json_atomic

START, END = "2008-01-01", "2024-12-31"


def _free_dir(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... : never mixes a new demo into an old one."""
    if not base.exists():
        return base
    k = 2
    while Path(f"{base}-{k}").exists():
        k += 1
    return Path(f"{base}-{k}")


def run_demo(output: str | Path = "rustybt-demo", workers: int | None = None, progress: bool = True,
             echo: Any = print) -> dict[str, Any]:
    """Run the three stages; returns a summary dict (also written to ``output/summary.json``)."""
    import optuna
    import ray

    from rustybt_ray.cluster.pool import WorkerPool
    from rustybt_ray.data import load_bundle
    from rustybt_ray.examples.sma_crossover import SmaCrossoverCached
    from rustybt_ray.optimize import (
        DiscreteParameter,
        GridSearchAlgorithm,
        ParallelOptimizer,
        ParameterSpace,
        WalkForwardOptimizer,
        WindowConfig,
    )
    from rustybt_ray.optimize.optuna_search import OptunaSearch
    from rustybt_ray.app.sweep_run import try_plot

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bars say it all
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise WorkerCountError(f"workers must be a positive int (or None for one per CPU), got {workers!r}")
    out = ensure_directory(_free_dir(Path(output)))  # before Ray starts: a bad path costs no start-up
    t_all = time.perf_counter()
    started_ray = False
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started_ray = True
    t_ray = time.perf_counter() - t_all
    demo = load_bundle("demo")
    summary: dict[str, Any] = {"output": str(out), "ray_start_s": t_ray}
    try:
        with WorkerPool(workers) as pool:
            echo(f"rustybt-ray demo: {len(demo.symbols)} symbols ({', '.join(demo.symbols)}), {START} .. {END}, "
                 f"{len(pool.workers)} workers")
            # 1. Grid search.
            grid_space = ParameterSpace([DiscreteParameter("fast", 5, 60, 5), DiscreteParameter("slow", 20, 250, 10)],
                                        constraints=["fast < slow"])
            t = time.perf_counter()
            grid = ParallelOptimizer(GridSearchAlgorithm(grid_space), pool=pool, progress=progress).run(
                SmaCrossoverCached, demo, START, END, objective="sharpe")
            summary["grid"] = {"trials": len(grid), "wall_s": time.perf_counter() - t, "best": grid.best}
            grid.to_parquet(out / "grid_results.parquet")
            echo(f"\n1. Grid search: {len(grid)} trials in {summary['grid']['wall_s']:.1f} s. Top 10 by Sharpe:")
            with pl.Config(tbl_rows=10, tbl_cols=8, float_precision=3, tbl_hide_dataframe_shape=True):
                echo(grid.top(10).select(["number", "fast", "slow", "sharpe", "cagr", "max_drawdown", "n_trades"]))
            over = grid.overfitting()
            summary["grid"]["overfitting"] = over
            echo(f"Best: {grid.best['params']}  Sharpe {grid.best['metrics']['sharpe']:.3f}  "
                 f"Deflated Sharpe Ratio {over['dsr']:.3f} (of {over['n_trials']} trials)  "
                 f"PBO {over['pbo']:.2f}  P(OOS loss) {over['prob_oos_loss']:.2f}")
            # 2. TPE with pruning over a wider space.
            wide = ParameterSpace([DiscreteParameter("fast", 2, 100, 1), DiscreteParameter("slow", 10, 300, 1)],
                                  constraints=["fast < slow"])
            t = time.perf_counter()
            tpe = ParallelOptimizer(OptunaSearch(wide, n_trials=120, seed=0, pruner="median"), pool=pool,
                                    progress=progress).run(SmaCrossoverCached, demo, START, END, objective="sharpe")
            summary["tpe"] = {"trials": len(tpe), "pruned": tpe.n_pruned, "wall_s": time.perf_counter() - t,
                              "best": tpe.best}
            tpe.to_parquet(out / "tpe_results.parquet")
            echo(f"\n2. TPE sweep: {len(tpe)} trials ({tpe.n_pruned} pruned early) in {summary['tpe']['wall_s']:.1f} s; "
                 f"best {tpe.best['params']} Sharpe {tpe.best['metrics']['sharpe']:.3f}")
            # 3. Walk-forward.
            wf_space = ParameterSpace([DiscreteParameter("fast", 5, 30, 5), DiscreteParameter("slow", 40, 200, 40)],
                                      constraints=["fast < slow"])
            t = time.perf_counter()
            wf = WalkForwardOptimizer(wf_space, WindowConfig(504, 126, 126, 126), top_k=3, pool=pool,
                                      progress=progress).run(SmaCrossoverCached, demo, "2014-01-01", END)
            summary["walk_forward"] = {"windows": wf.windows.height, "wall_s": time.perf_counter() - t,
                                       "oos_metrics": wf.oos_metrics, "efficiency": wf.walk_forward_efficiency}
            wf.to_parquet(out / "walk_forward")
            echo(f"\n3. {wf.summary()}")
            # Plots (with the plots extra).
            plots = _plots(out, demo, grid, wf, try_plot)
            summary["plots"] = [str(p) for p in plots]
    finally:
        if started_ray:
            ray.shutdown()
    summary["wall_s"] = time.perf_counter() - t_all
    write_json_atomic(out / "summary.json", summary)
    if not summary["plots"]:
        echo("\n(no plots: install them with pip install 'rustybt-ray[plots]')")
    echo(f"\nResults and plots in {out.resolve()}  ({summary['wall_s']:.1f} s in all, Ray start-up {t_ray:.1f} s)")
    return summary


def _plots(out: Path, demo: Any, grid: Any, wf: Any, try_plot: Any) -> list[Path]:
    from rustybt_ray.app.sweep_run import walk_forward_plot

    files: list[Path] = []

    def heat() -> Path:
        from rustybt_ray.app.plots import grid_heatmap

        return grid_heatmap(grid, "fast", "slow", path=out / "plots" / "grid_heatmap.png")

    def equity() -> Path:
        import numpy as np

        from rustybt_ray.app.plots import buy_and_hold_returns, equity_curve

        i0, i1 = demo.index_range(START, END)
        best = grid.best
        return equity_curve(np.asarray(grid.returns[best["number"]], dtype=np.float64), demo.calendar[i0:i1],
                            buy_and_hold_returns(demo, START, END), title=f"Best grid trial {best['params']}",
                            path=out / "plots" / "best_equity.png")

    for make in (heat, equity, lambda: walk_forward_plot(out / "plots" / "walk_forward.png", wf)):
        files += try_plot(make)
    return files
