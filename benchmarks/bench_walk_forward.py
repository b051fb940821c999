"""Walk-forward wall time: all windows at once (one job) vs the same windows one phase after another.

Workload:
- Strategy: ``SmaCrossover`` (8 symbols of the demo bundle, the natural ``history`` version).
- Grid: fast 5..50 step 5 x slow 60..150 step 10 = 100 points per window.
- Windows: 10 rolling windows of 504 train + 63 validation + 63 test bars (``unit='bars'``),
  stepped by 63 bars, from 2012-01-01; ``top_k=5`` -> 100 + 5 + 1 = 106 trials per window.
- 2 workers on one pool, shared by both variants (actors started and warmed up once).

Variants:
- concurrent: one ``WalkForwardOptimizer.run`` (one ``SweepSession``, every window's
  trials multiplexed on the pool);
- sequential: per window, a ``ParallelOptimizer.run`` for the train grid, one for the
  top 5 on validation and one for the selection on test, one after another, on the
  same pool (3 x 10 = 30 runs, each waiting for the previous one to finish).

Each variant runs ``--repeats`` times, alternating; the medians and the minimums (the
runs least disturbed by other load) are reported, with the load average. Both must
select the same parameters in every window. Also reported: each run's efficiency, the
workers' trial seconds over 2 x wall time (1.0: no worker ever idle). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import ray

from rustybt_ray import load_bundle
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import (
    DiscreteParameter,
    GridSearchAlgorithm,
    OptimizationConfig,
    ParallelOptimizer,
    ParameterSpace,
    WalkForwardOptimizer,
    WindowConfig,
    WorkerPool,
)
from rustybt_ray.optimize.walk_forward_source import FixedTrials

START, END = "2012-01-01", "2016-12-31"
TOP_K = 5


def space() -> ParameterSpace:
    """fast 5..50 x slow 60..150: 100 points."""
    return ParameterSpace([DiscreteParameter("fast", 5, 50, 5), DiscreteParameter("slow", 60, 150, 10)])


def config() -> WindowConfig:
    """504/63/63 bars, rolled by 63."""
    return WindowConfig(504, 63, 63, unit="bars")


def concurrent(pool: Any, bundle: Any, windows: int) -> tuple[float, list[dict[str, Any]], int, float]:
    """One WalkForwardOptimizer run; returns (wall seconds, selections, trials run, workers' trial seconds)."""
    wf = WalkForwardOptimizer(space(), config(), pool=pool, top_k=TOP_K, progress=False)
    t = time.perf_counter()
    res = wf.run(SmaCrossover, bundle, START, END)
    wall = time.perf_counter() - t
    assert res.windows.height == windows, res.windows.height
    return wall, res.windows.select(["fast", "slow"]).to_dicts(), wf.last_stats.trials, res.timeline["work_s"].sum()


def sequential(pool: Any, bundle: Any, windows: int) -> tuple[float, list[dict[str, Any]], int, float]:
    """The same windows, each phase a ParallelOptimizer run after the previous one."""
    specs = WalkForwardOptimizer(space(), config(), pool=pool).windows(bundle, START, END)
    with_returns = OptimizationConfig.from_env(return_daily_returns=True)
    picks, trials, work = [], 0, 0.0
    t = time.perf_counter()
    for w in specs:
        opt = ParallelOptimizer(GridSearchAlgorithm(space()), pool=pool, progress=False)
        train = opt.run(SmaCrossover, bundle, w.train.first, w.train.last, objective="sharpe")
        top = [{"fast": r["fast"], "slow": r["slow"]} for r in train.top(TOP_K).iter_rows(named=True)]
        val = ParallelOptimizer(FixedTrials(top), pool=pool, progress=False).run(
            SmaCrossover, bundle, w.validation.first, w.validation.last, objective="sharpe")
        v = val.trials.sort("number")["sharpe"].fill_nan(None).to_list()
        finite = [(x, i) for i, x in enumerate(v) if x is not None]
        pick = top[max(finite, key=lambda xi: (xi[0], -xi[1]))[1]] if finite else top[0]
        test = ParallelOptimizer(FixedTrials([pick]), pool=pool, config=with_returns, progress=False).run(
            SmaCrossover, bundle, w.test.first, w.test.last, objective="sharpe")
        assert test.n_complete == 1 and test.returns
        picks.append(pick)
        trials += len(train) + len(val) + len(test)
        work += sum(float(r.trials["duration_s"].sum()) for r in (train, val, test))
    return time.perf_counter() - t, picks, trials, work


def main() -> None:
    """Run both variants ``--repeats`` times, alternating, and print the medians as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=10)
    args = parser.parse_args()
    global END
    bundle = load_bundle("demo")
    # Just enough bars for --windows windows.
    i0, _ = bundle.index_range(START, None)
    END = str(bundle.calendar[i0 + 504 + 63 + 63 + 63 * (args.windows - 1) - 1])[:10]

    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    pool = WorkerPool(2)
    startup = time.perf_counter() - t
    # Warm-up: imports and the bundle in both actors, the strategy shipped once.
    ParallelOptimizer(FixedTrials([{"fast": 5, "slow": 60}] * 4), pool=pool, progress=False).run(
        SmaCrossover, bundle, START, "2013-12-31")

    conc, seq = [], []
    for _ in range(args.repeats):
        conc.append(concurrent(pool, bundle, args.windows))
        seq.append(sequential(pool, bundle, args.windows))
    c_s = statistics.median(r[0] for r in conc)
    s_s = statistics.median(r[0] for r in seq)
    trials = conc[0][2]
    out = {
        "benchmark": "bench_walk_forward",
        "date": time.strftime("%Y-%m-%d"),
        "workload": {
            "strategy": "SmaCrossover (8 symbols, demo bundle)", "windows": args.windows,
            "window_bars": {"train": 504, "validation": 63, "test": 63, "step": 63}, "dates": [START, END],
            "grid_points": 100, "top_k": TOP_K, "workers": 2,
        },
        "ray_startup_s": round(startup, 2),
        "concurrent_s": round(c_s, 3),
        "sequential_s": round(s_s, 3),
        "sequential_over_concurrent": round(s_s / c_s, 3),
        # Best of the repeats: the least disturbed by other load on the machine.
        "concurrent_min_s": round(min(r[0] for r in conc), 3),
        "sequential_min_s": round(min(r[0] for r in seq), 3),
        "ratio_of_mins": round(min(r[0] for r in seq) / min(r[0] for r in conc), 3),
        "loadavg_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
        # Workers' busy share: trial seconds / (2 workers x wall). Less sensitive than wall
        # time to other load on the machine (which slows the trials too).
        "efficiency_concurrent": [round(r[3] / (2 * r[0]), 3) for r in conc],
        "efficiency_sequential": [round(r[3] / (2 * r[0]), 3) for r in seq],
        "concurrent_runs_s": [round(r[0], 3) for r in conc],
        "sequential_runs_s": [round(r[0], 3) for r in seq],
        # The concurrent run shares one in-memory journal: a window's validation of the previous
        # window's selection on the same bars (its test) is answered once, not run twice.
        "trials_run": {"concurrent": trials, "sequential": seq[0][2]},
        "checks": {
            "same_selection": all(r[1] == conc[0][1] for r in conc + seq),
        },
    }
    pool.close()
    ray.shutdown()
    print(json.dumps(out, indent=2))
    assert np.all(list(out["checks"].values())), out["checks"]


if __name__ == "__main__":
    main()
