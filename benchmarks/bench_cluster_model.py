"""Per-call costs for a throughput model of big clusters (issue 11), measured on this machine, 2 workers.

Measures, printing one JSON object (saved to ``benchmarks/results/cluster_model.json``):

- ``ray_round_trip``: one Ray actor call carrying a batch of K tiny trials (``(number, params)``)
  and returning K :class:`TrialOutcome` objects with a real metrics dict and no returns,
  K = 1, 8, 64, 512; median of ``--calls`` calls. A linear fit ``t = a + b K`` separates the
  per-call (a) and per-trial (b) overhead.
- ``sweep``: a ``RandomSearchAlgorithm`` sweep of ``SmaCrossoverVector`` on "demo",
  2015-01-01..2024-12-31, fast 2..100, slow 5..400, ``fast < slow``, 2 pre-warmed workers,
  per-bar returns on and off: trials/s, the driver's time per trial
  (``SchedulerStats.driver_busy_s / trials``), the worker time per trial (sum of
  ``duration_s`` / trials: one vectorized trial's cost inside a kernel batch), batch sizes.
- ``bytes_per_trial``: the pickled size (what Ray ships for a plain object) of one real
  outcome of the sweep, with its float32 per-bar returns and without.

Usage: ``python benchmarks/bench_cluster_model.py [--trials 20000] [--calls 40]``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

from rustybt_ray.cluster import WorkerPool
from rustybt_ray.cluster.protocol import TrialOutcome
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.data import load_bundle
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
from rustybt_ray.optimize import DiscreteParameter, ParallelOptimizer, ParameterSpace, RandomSearchAlgorithm

START, END = "2015-01-01", "2024-12-31"
RESULTS = Path(__file__).with_name("results") / "cluster_model.json"


@ray.remote(num_cpus=0)
class Echo:
    """An actor that answers K trials with K outcomes at once: Ray's cost, no backtest."""

    def __init__(self, metrics: dict[str, float]) -> None:
        self.metrics = metrics

    def run_batch(self, job_id: str, trials: list[tuple[int, dict[str, Any]]]) -> list[TrialOutcome]:
        """One outcome per trial, metrics copied."""
        return [TrialOutcome(n, p, "complete", dict(self.metrics), None, 0.0, 0) for n, p in trials]


def round_trips(metrics: dict[str, float], calls: int) -> dict[str, Any]:
    """Median wall of one call per K, and the fit t = a + b K."""
    actor = Echo.remote(metrics)
    ray.get(actor.run_batch.remote("warm", [(0, {"fast": 1, "slow": 2})]))
    out: dict[str, Any] = {}
    for k in (1, 8, 64, 512):
        batch = [(i, {"fast": 10 + i % 50, "slow": 100 + i % 200}) for i in range(k)]
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            ray.get(actor.run_batch.remote("job", batch))
            times.append(time.perf_counter() - t)
        out[f"K={k}"] = {"median_ms": round(statistics.median(times) * 1e3, 3),
                         "per_trial_us": round(statistics.median(times) / k * 1e6, 2)}
    ks = np.array([1, 8, 64, 512], dtype=float)
    ts = np.array([out[f"K={int(k)}"]["median_ms"] for k in ks]) / 1e3
    b, a = np.polyfit(ks, ts, 1)
    out["fit_per_call_ms"] = round(a * 1e3, 3)
    out["fit_per_trial_us"] = round(b * 1e6, 2)
    ray.kill(actor)
    return out


def sweep(pool: WorkerPool, demo: Any, n: int, returns: bool) -> tuple[dict[str, Any], Any]:
    """One random sweep; its rates and the result."""
    space = ParameterSpace([DiscreteParameter("fast", 2, 100), DiscreteParameter("slow", 5, 400)], ["fast < slow"])
    config = OptimizationConfig(return_daily_returns=returns)
    pool.clear_cache()
    opt = ParallelOptimizer(RandomSearchAlgorithm(space, n_trials=n, seed=3), pool=pool, config=config,
                            progress=False)
    t = time.perf_counter()
    result = opt.run(SmaCrossoverVector, demo, START, END, capital_base=1e6)
    wall = time.perf_counter() - t
    stats = opt.last_stats
    worker_s = float(result.trials["duration_s"].sum())
    return {"trials": n, "wall_s": round(wall, 3), "trials_per_s": round(n / wall, 1),
            "driver_busy_s": round(stats.driver_busy_s, 3),
            "driver_ms_per_trial": round(stats.driver_busy_s / stats.trials * 1e3, 4),
            "worker_ms_per_trial": round(worker_s / n * 1e3, 4),
            "batches": stats.batches, "median_batch_size": statistics.median(stats.batch_sizes),
            "kernel_trials": stats.kernel_trials, "n_complete": result.n_complete}, result


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20_000)
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    demo = load_bundle("demo")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        pool = WorkerPool(2, OptimizationConfig(), warm_kernel=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # each worker has loaded the compiled kernel
            if all(i["kernel_warm_s"] is not None for i in ray.get([a.info.remote() for a in pool.workers.values()])):
                break
            time.sleep(0.05)
        out: dict[str, Any] = {"benchmark": "bench_cluster_model", "date": time.strftime("%Y-%m-%d"),
                               "machine": {"cores": 2, "workers": 2}, "bars": None}
        sweep(pool, demo, 500, True)  # warm-up: caches, code paths
        on, result = sweep(pool, demo, args.trials, True)
        off, _ = sweep(pool, demo, args.trials, False)
        out["sweep"] = {"returns_on": on, "returns_off": off}
        row = result.trials.row(0, named=True)
        metric_names = [c for c in result.trials.columns
                        if c not in ("number", "fast", "slow", "status", "error", "duration_s", "worker", "attempts")]
        metrics = {k: float(row[k]) for k in metric_names if row[k] is not None}
        bars = int(metrics.get("n_bars", 0))
        out["bars"] = bars
        params = {"fast": row["fast"], "slow": row["slow"]}
        plain = TrialOutcome(0, params, "complete", metrics, None, 0.01, 0)
        with_ret = TrialOutcome(0, params, "complete", metrics, None, 0.01, 0,
                                returns=np.zeros(bars, dtype=np.float32))
        out["bytes_per_trial"] = {"without_returns": len(pickle.dumps(plain, protocol=5)),
                                  "with_returns": len(pickle.dumps(with_ret, protocol=5)),
                                  "note": "pickle protocol 5 of a TrialOutcome with the sweep's real metrics "
                                          f"and a float32 returns array of {bars} bars"}
        out["ray_round_trip"] = round_trips(metrics, args.calls)
        pool.close()
    finally:
        ray.shutdown()
    RESULTS.parent.mkdir(exist_ok=True)
    text = json.dumps(out, indent=2)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(RESULTS)
    print(text)


if __name__ == "__main__":
    main()
