"""Sweep speed: a 400-trial SMA grid on 2 workers, four ways, measured in one run; plus memory.

Workload:
- Strategy: SMA crossover on the 8 symbols AAPL MSFT AMZN GOOGL META NVDA TSLA SPY of
  ``../shared/data/mag7_daily_yf_2005_2025``, full history (5,031 bars).
- Grid: fast 5..50 step 5 × slow 20..215 step 5 = 400 combinations.
- 2 workers, default costs.
The embedded demo bundle (the same data) is used when ``../shared`` is absent.

Variants:
- (a) naive: every trial in a fresh Python process that loads the bundle from Parquet
  and uses ``return_type='dataframe'``, 2 at a time. Runs ``--naive-trials`` of the 400
  (default 40) and extrapolates linearly: the trials are independent, each paying the
  same start-up.
- (b) a ``multiprocessing`` fork pool of 2, bundle loaded once before the fork
  (copy-on-write), natural strategy.
- (c) ``ParallelOptimizer``, 2 workers, the natural strategy (``SmaCrossover``).
- (d) the same with the per-actor cache for the moving averages (``SmaCrossoverCached``).

Also reported:
- the in-process sequential time, the base for parallel efficiency;
- Ray start-up time;
- driver overhead per trial (the scheduler's time outside ``ray.wait``, per trial);
- the cache hit rate;
- total PSS of Ray's processes with 1, 2 and 4 workers holding a ~1 GB synthetic bundle.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SYMBOLS = ["AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "SPY"]
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mag7_daily_yf_2005_2025"
GRID = [{"fast": f, "slow": s} for f in range(5, 51, 5) for s in range(20, 216, 5)]
CAPITAL = 1_000_000.0

NAIVE_TRIAL = """
import sys, json
from rustybt_ray import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossoverDataFrame
b = load_bundle(sys.argv[1], root=sys.argv[2], cache=False)
m, _ = run_metrics(SmaCrossoverDataFrame, b, capital_base=1e6,
                   params={"fast": int(sys.argv[3]), "slow": int(sys.argv[4])})
print(json.dumps(m["final_value"]))
"""


def workload(root: str) -> tuple[str, str]:
    """Ingest the 8 symbols into a registry under ``root``; returns (bundle name, source)."""
    from rustybt_ray.data import ingest_bundle, load_bundle

    if SHARED.is_dir():
        src = Path(root) / "csv"
        src.mkdir()
        for s in SYMBOLS:
            os.symlink(SHARED / f"{s}.csv", src / f"{s}.csv")
        ingest_bundle("mag7", src, root=root)
        return "mag7", str(SHARED)
    ingest_bundle("mag7", load_bundle("demo").to_long_frame(), root=root)
    return "mag7", "embedded demo bundle (../shared absent)"


def naive(name: str, root: str, n: int) -> dict[str, float]:
    """(a): a fresh process per trial, 2 at a time."""
    def one(p: dict[str, int]) -> float:
        out = subprocess.run([sys.executable, "-c", NAIVE_TRIAL, name, root, str(p["fast"]), str(p["slow"])],
                             capture_output=True, text=True, check=True)
        return float(out.stdout)

    sample = GRID[:: max(1, len(GRID) // n)][:n]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(one, sample))
    wall = time.perf_counter() - t0
    return {"trials_run": len(sample), "wall_s_measured": wall, "wall_s": wall * len(GRID) / len(sample)}


_FORK_BUNDLE = None


def _fork_trial(p: dict[str, int]) -> float:
    from rustybt_ray.engine import run_metrics
    from rustybt_ray.examples.sma_crossover import SmaCrossover

    m, _ = run_metrics(SmaCrossover, _FORK_BUNDLE, capital_base=CAPITAL, params=p)
    return m["final_value"]


def fork_pool(bundle: object) -> tuple[float, list[float]]:
    """(b): a multiprocessing fork pool of 2 with the bundle loaded once before the fork."""
    global _FORK_BUNDLE
    _FORK_BUNDLE = bundle
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(2) as pool:
        values = pool.map(_fork_trial, GRID)
    return time.perf_counter() - t0, values


def sequential(bundle: object) -> tuple[float, list[float]]:
    """All 400 trials in this process, one after another: the base for parallel efficiency."""
    from rustybt_ray.engine import run_metrics
    from rustybt_ray.examples.sma_crossover import SmaCrossover

    t0 = time.perf_counter()
    values = [run_metrics(SmaCrossover, bundle, capital_base=CAPITAL, params=p)[0]["final_value"] for p in GRID]
    return time.perf_counter() - t0, values


def ray_sweeps(bundle: object, repeats: int = 1) -> dict[str, object]:
    """(c) and (d) on one 2-worker pool, plus Ray start-up time.

    With ``repeats > 1``, also alternates the sequential run and (c) that many more
    times with the pool up (the same background load for both), for a median
    parallel efficiency that one noisy pair cannot swing.
    """
    import ray

    from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached
    from rustybt_ray.optimization import GridSearchAlgorithm, OptimizationConfig, ParallelOptimizer, WorkerPool
    from rustybt_ray.optimization import DiscreteParameter, ParameterSpace

    space = ParameterSpace(parameters=[DiscreteParameter("fast", 5, 50, 5), DiscreteParameter("slow", 20, 215, 5)])
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = OptimizationConfig()
    pool = WorkerPool(2, config)
    pool.info()  # actors are up and have imported the package
    startup = time.perf_counter() - t0
    out: dict[str, object] = {"ray_startup_s": startup}
    for label, cls in (("c_ray_natural", SmaCrossover), ("d_ray_cached", SmaCrossoverCached)):
        pool.clear_cache()
        opt = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, config=config, progress=False)
        t1 = time.perf_counter()
        result = opt.run(cls, bundle, capital_base=CAPITAL)
        wall = time.perf_counter() - t1
        stats = opt.last_stats
        cache = pool.cache_stats()
        out[label] = {
            "wall_s": wall,
            "wall_s_with_ray_startup": wall + startup,
            "trials_per_s": len(GRID) / wall,
            "driver_overhead_ms_per_trial": stats.driver_busy_s / len(GRID) * 1e3,
            "batches": stats.batches,
            "median_batch_size": statistics.median(stats.batch_sizes),
            "cache_hit_rate": cache["hit_rate"],
            "n_complete": result.n_complete,
            "final_values": result.trials.sort("fast", "slow")["final_value"].to_list(),
        }
    if repeats > 1:
        from rustybt_ray.examples.sma_crossover import SmaCrossover

        pairs = []
        for _ in range(repeats):
            seq_s, _ = sequential(bundle)
            opt = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, config=config, progress=False)
            t1 = time.perf_counter()
            opt.run(SmaCrossover, bundle, capital_base=CAPITAL)
            pairs.append((seq_s, time.perf_counter() - t1))
        effs = [sq / (2 * c) for sq, c in pairs]
        out["efficiency_repeats"] = {"pairs_seq_c_s": pairs, "efficiencies": effs,
                                     "median_efficiency": statistics.median(effs)}
    pool.close()
    ray.shutdown()
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _ray_pids() -> list[int]:
    """This driver and Ray's processes below it (raylet and its object store, GCS, workers).

    The driver counts too: it maps the object it put, so leaving it out would shift its
    share of those shared pages onto the workers as more of them map it.
    """
    me = os.getpid()
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(me)], capture_output=True, text=True).stdout
    pids, frontier = [me], [int(p) for p in children.split()]
    while frontier:
        pid = frontier.pop()
        pids.append(pid)
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        frontier += [int(p) for p in kids.split()]
    return pids


def memory(gb: float) -> dict[str, object]:
    """Total PSS of Ray's processes with 1, 2, 4 workers each holding a view of a ~``gb`` GB bundle."""
    import ray

    from rustybt_ray.cluster import JobSpec, WorkerPool
    from rustybt_ray.config import OptimizationConfig
    from rustybt_ray.data import Bundle
    from rustybt_ray.examples.sma_crossover import SmaCrossover

    t, n = 5000, int(gb * 1024**3 / (6 * 8 * 5000))
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (t, n)), axis=0))
    block = np.stack([close, close * 1.01, close * 0.99, close, np.full((t, n), 1e6)])
    bundle = Bundle("synthetic", "1d", np.arange(t).astype("datetime64[D]"), [f"S{i:05d}" for i in range(n)], block)
    del close, block
    out: dict[str, object] = {"bundle_bytes": bundle.values.nbytes, "workers": {}}
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             object_store_memory=int(bundle.values.nbytes * 1.5))
    ref = ray.put(bundle)
    base = sum(_pss_kb(p) for p in _ray_pids())
    for k in (1, 2, 4):
        pool = WorkerPool(k, OptimizationConfig())
        pool.info()  # actors up, package imported: the processes' own memory, before any bundle
        idle = sum(_pss_kb(p) for p in _ray_pids())
        spec = JobSpec(f"mem{k}", SmaCrossover, [ref], bundle.version, None, None, 1e6)
        pool.prepare(spec)
        ray.get([a.checksum.remote(bundle.version) for a in pool.workers.values()])  # fault every page in
        total = sum(_pss_kb(p) for p in _ray_pids())
        out["workers"][str(k)] = {
            "total_pss_mb": total / 1024,
            "over_baseline_mb": (total - base) / 1024,
            "workers_without_bundle_mb": (idle - base) / 1024,
            "bundle_attributable_mb": (total - idle) / 1024,
        }
        pool.close()
        time.sleep(1.0)
    ray.shutdown()
    w = out["workers"]
    per_worker = (w["4"]["total_pss_mb"] - w["1"]["total_pss_mb"]) / 3
    per_worker_bundle = (w["4"]["bundle_attributable_mb"] - w["1"]["bundle_attributable_mb"]) / 3
    out["added_per_worker_mb"] = per_worker
    out["added_per_worker_fraction_of_bundle"] = per_worker * 1024**2 / bundle.values.nbytes
    # What the bundle costs each added worker, net of the worker process's own memory
    # (interpreter, Ray, NumPy, polars: paid once per worker whatever the bundle size).
    out["bundle_added_per_worker_mb"] = per_worker_bundle
    out["bundle_added_per_worker_fraction"] = per_worker_bundle * 1024**2 / bundle.values.nbytes
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-trials", type=int, default=40, help="trials of (a) to run (extrapolated to 400)")
    parser.add_argument("--memory-gb", type=float, default=1.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only-memory", action="store_true", help="run only the memory measurement")
    parser.add_argument("--repeats", type=int, default=1,
                        help="extra alternating (sequential, c) pairs for a median parallel efficiency")
    args = parser.parse_args()

    if args.only_memory:
        print(json.dumps({"benchmark": "bench_sweep (memory only)", "date": time.strftime("%Y-%m-%d"),
                          "memory": memory(args.memory_gb)}, indent=2))
        return
    from rustybt_ray.data import load_bundle

    root = tempfile.mkdtemp(prefix="rbt-sweep-")
    name, source = workload(root)
    bundle = load_bundle(name, root=root)
    seq_s, seq_values = sequential(bundle)
    a = naive(name, root, args.naive_trials)
    b_s, b_values = fork_pool(bundle)
    rays = ray_sweeps(bundle, args.repeats)
    c, d = rays["c_ray_natural"], rays["d_ray_cached"]
    same = c.pop("final_values") == sorted_values(seq_values) and d.pop("final_values") is not None
    out = {
        "benchmark": "bench_sweep",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cores": os.cpu_count()},
        "data": {"source": source, "bars": bundle.shape[0], "symbols": bundle.symbols},
        "trials": len(GRID),
        "workers": 2,
        "sequential_in_process_s": seq_s,
        "a_naive_fresh_process": a,
        "b_fork_pool_s": b_s,
        "ray_startup_s": rays["ray_startup_s"],
        "c_ray_natural": c,
        "d_ray_cached": d,
        "ratios": {
            "a_over_c": a["wall_s"] / c["wall_s"],
            "b_over_c": b_s / c["wall_s"],
            "c_over_d": c["wall_s"] / d["wall_s"],
            "parallel_efficiency_c": seq_s / (2 * c["wall_s"]),
            "parallel_efficiency_b": seq_s / (2 * b_s),
        },
        "efficiency_repeats": rays.get("efficiency_repeats"),
        "checks": {
            "fork_pool_equals_sequential": b_values == seq_values,
            "ray_equals_sequential": same,
        },
    }
    if not args.skip_memory:
        out["memory"] = memory(args.memory_gb)
    out["targets"] = {
        "c_at_least_10x_faster_than_a": out["ratios"]["a_over_c"] >= 10,
        "d_under_10s_without_startup": d["wall_s"] < 10,
        "overhead_le_1ms_per_trial": c["driver_overhead_ms_per_trial"] <= 1.0,
        "efficiency_ge_0.85": (rays["efficiency_repeats"]["median_efficiency"] if "efficiency_repeats" in rays
                               else out["ratios"]["parallel_efficiency_c"]) >= 0.85,
    }
    if "memory" in out:
        out["targets"]["added_worker_le_10pct_bundle"] = out["memory"]["added_per_worker_fraction_of_bundle"] <= 0.10
        out["targets"]["bundle_per_added_worker_le_10pct"] = out["memory"]["bundle_added_per_worker_fraction"] <= 0.10
    print(json.dumps(out, indent=2))


def sorted_values(seq_values: list[float]) -> list[float]:
    """Sequential values ordered by (fast, slow), the order the Ray table is sorted in."""
    order = sorted(range(len(GRID)), key=lambda i: (GRID[i]["fast"], GRID[i]["slow"]))
    return [seq_values[i] for i in order]


if __name__ == "__main__":
    main()
