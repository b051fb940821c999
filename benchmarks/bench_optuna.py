"""Bayesian sweeps: does the driver keep 2 workers busy through a 2,000-trial TPE sweep, and what does pruning save?

Workload: ``SmaCrossoverCached`` on the embedded demo bundle (8 symbols, 2005-2025,
5,031 daily bars), parameters fast 2..100 and slow 10..300 (integers, fast < slow),
objective Sharpe, 2 workers, one persistent pool for every sweep.

1. **TPE, 2,000 trials** (``OptunaSearch(sampler="tpe", seed=0)``): wall time, worker
   busy fraction = sum of trial run times / (workers x wall), and the driver's time per
   ``ask`` and ``tell`` in buckets of finished trials (how it grows with the study).
2. **Pruning**: the same TPE sweep of ``--prune-trials`` trials with and without a
   ``MedianPruner`` judged at each year: compute used (sum of trial run times and of
   bars run), and how close the pruned sweep's best (complete) Sharpe is to the
   unpruned one's.

Prints one JSON object. ``--trials`` and ``--prune-trials`` shrink it for a quick look.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np


def instrument(algorithm: Any) -> list[tuple[str, int, int, float]]:
    """Wrap ``ask``/``tell`` to log ``(kind, finished trials before, trials, seconds)``."""
    log: list[tuple[str, int, int, float]] = []
    ask, tell = algorithm.ask, algorithm.tell

    def timed_ask(n: int = 1) -> Any:
        t = time.perf_counter()
        out = ask(n)
        log.append(("ask", algorithm.n_told, len(out), time.perf_counter() - t))
        return out

    def timed_tell(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = tell(*args, **kw)
        log.append(("tell", algorithm.n_told, 1, time.perf_counter() - t))
        return out

    algorithm.ask, algorithm.tell = timed_ask, timed_tell
    return log


def buckets(log: list[tuple[str, int, int, float]], size: int, total: int) -> list[dict[str, Any]]:
    """Driver ms per asked trial and per tell, by bucket of finished trials."""
    out = []
    for lo in range(0, total, size):
        hi = lo + size
        ask = [(k, s) for kind, done, k, s in log if kind == "ask" and lo <= done < hi and k > 0]
        tell = [s for kind, done, _, s in log if kind == "tell" and lo <= done < hi]
        n_ask = sum(k for k, _ in ask)
        out.append({
            "finished_trials": f"{lo}-{hi}",
            "ask_ms_per_trial": round(1e3 * sum(s for _, s in ask) / n_ask, 3) if n_ask else None,
            "tell_ms": round(1e3 * statistics.median(tell), 3) if tell else None,
        })
    return out


def main() -> None:
    """Run both parts and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--prune-trials", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-pruning", action="store_true")
    args = parser.parse_args()

    import optuna
    import ray

    from rustybt_ray.cluster.pool import WorkerPool
    from rustybt_ray.data import load_bundle
    from rustybt_ray.examples.sma_crossover import SmaCrossoverCached
    from rustybt_ray.optimize import DiscreteParameter, ParallelOptimizer, ParameterSpace
    from rustybt_ray.optimize.optuna_search import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = ParameterSpace([DiscreteParameter("fast", 2, 100, 1), DiscreteParameter("slow", 10, 300, 1)],
                           constraints=["fast < slow"])
    demo = load_bundle("demo")
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    report: dict[str, Any] = {"workload": f"SmaCrossoverCached, demo bundle {len(demo.calendar)} bars x "
                                          f"{len(demo.symbols)} assets, {args.workers} workers"}
    try:
        with WorkerPool(args.workers) as pool:
            # Warm-up: the actors import everything and fill their caches once.
            ParallelOptimizer(OptunaSearch(space, sampler="random", n_trials=8, seed=99), pool=pool,
                              progress=False).run(SmaCrossoverCached, demo, objective="sharpe")
            algo = OptunaSearch(space, n_trials=args.trials, seed=0)
            log = instrument(algo)
            opt = ParallelOptimizer(algo, pool=pool, progress=False)
            t = time.perf_counter()
            result = opt.run(SmaCrossoverCached, demo, objective="sharpe")
            wall = time.perf_counter() - t
            stats = opt.last_stats
            # Only trials that ran on a worker: repeats of finished points are answered from
            # the journal (attempts == 0) and carry the original's duration.
            ran = result.trials.filter(result.trials["attempts"] > 0)
            busy = float(ran["duration_s"].sum())
            ask_s = sum(s for kind, *_, s in log if kind == "ask")
            tell_s = sum(s for kind, *_, s in log if kind == "tell")
            report["tpe"] = {
                "trials": len(result), "trials_run": stats.trials, "repeats_answered_from_journal": len(result) - ran.height,
                "wall_s": round(wall, 2),
                "trials_per_s": round(len(result) / wall, 1),
                "mean_trial_ms_in_workers": round(1e3 * busy / max(1, ran.height), 1),
                "worker_busy_fraction": round(busy / (args.workers * stats.wall_s), 3),
                "driver_busy_s": round(stats.driver_busy_s, 2),
                "driver_ask_s": round(ask_s, 2), "driver_tell_s": round(tell_s, 2),
                "driver_ms_per_trial": round(1e3 * stats.driver_busy_s / len(result), 2),
                "by_finished_trials": buckets(log, max(1, args.trials // 4), args.trials),
                "best_sharpe": result.best["metrics"]["sharpe"], "best_params": result.best["params"],
                "rejected_proposals": algo.n_rejected,
            }
            prune: dict[str, Any] = {}
            bars_total = len(demo.calendar)
            for label, pruner in (() if args.skip_pruning else (("unpruned", None), ("median_pruned", "median"))):
                a = OptunaSearch(space, n_trials=args.prune_trials, seed=1, pruner=pruner)
                o = ParallelOptimizer(a, pool=pool, progress=False)
                t = time.perf_counter()
                r = o.run(SmaCrossoverCached, demo, objective="sharpe")
                wall = time.perf_counter() - t
                done = r.trials.filter(r.trials["status"] == "complete")
                pruned = r.trials.filter(r.trials["status"] == "pruned")
                ran = r.trials.filter(r.trials["attempts"] > 0)
                prune[label] = {
                    "trials": len(r), "trials_run": ran.height, "complete": done.height, "pruned": pruned.height,
                    "wall_s": round(wall, 2), "compute_s": round(float(ran["duration_s"].sum()), 2),
                    "best_sharpe": r.best["metrics"]["sharpe"] if r.best else None,
                    "best_params": r.best["params"] if r.best else None,
                }
            if args.skip_pruning:
                return print(json.dumps(report, indent=1, default=str))
            u, p = prune["unpruned"], prune["median_pruned"]
            prune["compute_saved_fraction"] = round(1 - p["compute_s"] / u["compute_s"], 3)
            prune["wall_ratio_pruned_over_unpruned"] = round(p["wall_s"] / u["wall_s"], 3)
            prune["best_sharpe_gap"] = round(u["best_sharpe"] - p["best_sharpe"], 4)
            prune["bars_per_trial"] = bars_total
            report["pruning"] = prune
    finally:
        ray.shutdown()
    print(json.dumps(report, indent=1, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


if __name__ == "__main__":
    main()
