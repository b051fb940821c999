"""Vectorized strategies (issue 10): sweeps on 2 Ray workers against the event path and vectorbt, scaling, cold start.

Workload: the 8 mag-7 symbols of ``../shared/data/mag7_daily_yf_2005_2025`` as
``bench_engine.load_workload`` loads them (the demo bundle, the same data, when
``../shared`` is absent), full history (5,031 bars), default costs (0.001 per share,
5 bps slippage), capital 1,000,000. ``SmaCrossoverVector`` and its event-driven forms
``SmaCrossoverCached`` / ``SmaCrossover`` (``rustybt_ray/examples/sma_crossover.py``).

Measured in one run (wall seconds; medians of repeats where cheap):

- ``sweep_400``: the grid of ``bench_sweep.py`` (fast 5..50 step 5 x slow 20..215 step 5)
  through ``ParallelOptimizer`` on a 2-actor pool (Ray start-up excluded, pool ready,
  per-bar returns on as by default, the actors' caches cleared before every run):
  ``SmaCrossoverVector`` (first run and median of the next ``--repeats``),
  ``SmaCrossoverCached`` and (not with ``--quick``) ``SmaCrossover``; vectorbt's
  ``Portfolio.from_signals`` on the same signals (``bench_vector_vbt.py`` in the
  interpreter ``$VBT_PYTHON``; see there what differs).
- ``pairs_4851``: every pair fast < slow of windows 2..100 (4,851 trials) through
  ``ParallelOptimizer`` (median of ``--repeats``), and the peak RSS summed over this driver and all its
  descendants (Ray's GCS, raylet and workers), sampled every 50 ms in a thread.
  Summed RSS counts shared pages (the object store, shared libraries) once per
  process mapping them, so it overstates the machine's use; one more, untimed, run
  also samples the summed PSS (shared pages split). vectorbt on the same
  pairs only with ``--vbt-pairs`` (it needs ~20 GB).
- ``in_process``: the 400 trials in one process, ``run_vector_batch`` (256 per kernel
  call) against one ``run_vector`` call per trial.
- ``per_trial_vs_K``: one kernel call of K = 1, 8, 64, 512 trials, warm indicator cache:
  ``simulate_vector`` (weights, kernel, fill logs kept, no metrics) and
  ``run_vector_batch(batch_size=K)`` (the sweep workers' path: metrics and returns).
- ``per_trial_vs_assets``: the same with ``--asset-trials`` trials of the grid on 8, 100
  and all ~500 symbols of ``../shared/data/sp500_daily_yf_2005_2025`` (8: the mag-7
  symbols; 100: those and the first 92 others alphabetically).
- ``one_trial_us_per_bar``: fast=10, slow=50, vectorized vs the event loop through
  ``run_metrics``.
- ``cold_start``: a fresh interpreter imports the package, loads the demo bundle and
  runs one trial, twice, with ``NUMBA_CACHE_DIR`` a new empty folder (so a compiled
  kernel compiles in the first and loads its on-disk cache in the second).

Prints one JSON object. ``--quick`` skips the slow event variants, the 4,851 pairs and
the 500-symbol bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_engine import SP500, SYMBOLS, load_sp500, load_workload  # noqa: E402
from bench_sweep import CAPITAL, GRID  # noqa: E402

from rustybt_ray.data import Bundle  # noqa: E402
from rustybt_ray.engine import ArrayCache, TradingAlgorithm, run_metrics  # noqa: E402
from rustybt_ray.examples.sma_crossover import (  # noqa: E402
    SmaCrossover,
    SmaCrossoverCached,
    SmaCrossoverNatural,
    SmaCrossoverVector,
)
from rustybt_ray.vector import run_vector, run_vector_batch, simulate_vector  # noqa: E402
from rustybt_ray.vector.strategy import make_instance  # noqa: E402

PAIR_WINDOWS = range(2, 101)  # 99 windows: 99 * 98 / 2 = 4,851 pairs fast < slow
N_PAIRS = len(PAIR_WINDOWS) * (len(PAIR_WINDOWS) - 1) // 2

COLD = """
import json, sys, time
t0 = time.perf_counter()
from rustybt_ray.data import load_bundle
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
from rustybt_ray.vector import run_vector
t1 = time.perf_counter()
b = load_bundle("demo")
t2 = time.perf_counter()
run_vector(SmaCrossoverVector, b, capital_base=1e6, params={"fast": 10, "slow": 50})
t3 = time.perf_counter()
run_vector(SmaCrossoverVector, b, capital_base=1e6, params={"fast": 20, "slow": 100})
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_demo_s": t2 - t1, "first_trial_s": t3 - t2,
                  "second_trial_s": t4 - t3, "numba_loaded": "numba" in sys.modules}))
"""


def clock(fn: Callable[[], Any], repeats: int = 1) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def tree_rss_bytes(root_pid: int) -> int:
    """RSS of ``root_pid`` plus all its descendants (psutil, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            me = psutil.Process(root_pid)
            procs = [me, *me.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                pass
        return total
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    total, todo, page = 0, [root_pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def _tree_pss_bytes(root_pid: int) -> int:
    """PSS (shared pages split between the processes mapping them) of ``root_pid`` and its descendants."""
    kids = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.split()
    children: dict[int, list[int]] = {}
    for pid, ppid in zip(kids[::2], kids[1::2]):
        children.setdefault(int(ppid), []).append(int(pid))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total


class RssSampler:
    """Samples the summed RSS of this process and its descendants every ``interval`` s; keeps the max.

    With ``pss=True`` also the summed PSS (about 30 ms a sample for a Ray session on this
    machine, so not for a timed run).
    """

    def __init__(self, interval: float = 0.05, pss: bool = False) -> None:
        self.interval = interval
        self.pss = pss
        self.peak = 0
        self.peak_pss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(pid))
            if self.pss:
                self.peak_pss = max(self.peak_pss, _tree_pss_bytes(pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))


def _mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def ray_sweeps(b: Bundle, quick: bool, repeats: int) -> dict[str, Any]:
    """The 400-trial grid (vector and event forms) and the 4,851 pairs through ``ParallelOptimizer``, 2 actors."""
    import ray

    from rustybt_ray.cluster import WorkerPool
    from rustybt_ray.config import OptimizationConfig
    from rustybt_ray.optimize import DiscreteParameter, GridSearchAlgorithm, ParallelOptimizer, ParameterSpace

    grid = ParameterSpace([DiscreteParameter("fast", 5, 50, 5), DiscreteParameter("slow", 20, 215, 5)])
    pairs = ParameterSpace([DiscreteParameter("fast", PAIR_WINDOWS[0], PAIR_WINDOWS[-1]),
                            DiscreteParameter("slow", PAIR_WINDOWS[0], PAIR_WINDOWS[-1])],
                           constraints=["fast < slow"])
    t0 = time.perf_counter()
    # address="local": a fresh private Ray, never a cluster another process started.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = OptimizationConfig()
    pool = WorkerPool(2, config, warm_kernel=True)  # as ParallelOptimizer starts its own pool for a VectorStrategy
    pool.info()  # actors up, package imported
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # and each has loaded the compiled kernel (part of the pool's start)
        infos = ray.get([a.info.remote() for a in pool.workers.values()])
        if all(i["kernel_warm_s"] is not None for i in infos):
            break
        time.sleep(0.05)
    out: dict[str, Any] = {"ray_startup_s": round(time.perf_counter() - t0, 3),
                           "worker_kernel_load_s": [i["kernel_warm_s"] for i in infos]}

    def sweep(cls: type[TradingAlgorithm], space: ParameterSpace) -> tuple[float, Any, Any]:
        pool.clear_cache()
        opt = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, config=config, progress=False)
        t = time.perf_counter()
        result = opt.run(cls, b, capital_base=CAPITAL)
        return time.perf_counter() - t, result, opt.last_stats

    def entry(wall: float, result: Any, stats: Any, n: int) -> dict[str, Any]:
        return {"wall_s": round(wall, 3), "trials_per_s": round(n / wall, 1), "n_complete": result.n_complete,
                "batches": stats.batches, "median_batch_size": statistics.median(stats.batch_sizes),
                "driver_overhead_ms_per_trial": round(stats.driver_busy_s / n * 1e3, 3)}

    def finals(result: Any, below: bool = False) -> np.ndarray:
        t = result.trials.sort("fast", "slow")
        if below:  # SmaCrossover's fast window is cut to its slow one: fast >= slow never trades there
            t = t.filter(t["fast"] < t["slow"])
        return np.asarray(t["final_value"].to_list())

    try:
        first, res_v, st = sweep(SmaCrossoverVector, grid)
        vec = entry(first, res_v, st, len(GRID))
        walls = [sweep(SmaCrossoverVector, grid)[0] for _ in range(repeats)]
        vec.update(first_run_s=round(first, 3), wall_s=round(statistics.median(walls), 3),
                   runs_s=[round(w, 3) for w in walls])
        vec["trials_per_s"] = round(len(GRID) / vec["wall_s"], 1)
        out["vector_SmaCrossoverVector"] = vec
        wall, res_c, st = sweep(SmaCrossoverCached, grid)
        out["event_SmaCrossoverCached"] = entry(wall, res_c, st, len(GRID))
        fv, fc = finals(res_v), finals(res_c)
        out["check_vector_vs_cached_final_value_max_rel_diff"] = float(np.max(np.abs(fv - fc) / np.abs(fc)))
        if quick:
            out["event_SmaCrossover"] = "skipped (--quick)"
        else:
            wall, res_n, st = sweep(SmaCrossover, grid)
            out["event_SmaCrossover"] = entry(wall, res_n, st, len(GRID))
            # what strategy authors write (np.nanmean windows, data.can_trade per asset): the
            # issue's 58.9 s row; its trades differ where windows reach before a listing
            wall, _res_nat, st = sweep(SmaCrossoverNatural, grid)
            out["event_natural_nanmean_can_trade"] = entry(wall, _res_nat, st, len(GRID))
            fn, fcb = finals(res_n, True), finals(res_c, True)
            out["check_natural_vs_cached_fast_lt_slow_final_value_max_rel_diff"] = float(
                np.max(np.abs(fn - fcb) / np.abs(fcb)))
        if quick:
            out["pairs_4851"] = "skipped (--quick)"
        else:
            baseline = tree_rss_bytes(os.getpid())
            with open("/proc/self/statm") as f:  # the driver alone, to tell its share from Ray's
                driver_before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            walls, peaks = [], []
            for _ in range(repeats):  # each sweep clears the actors' caches first
                with RssSampler() as rss:
                    wall, res_p, st = sweep(SmaCrossoverVector, pairs)
                walls.append(wall)
                peaks.append(rss.peak)
            p = entry(statistics.median(walls), res_p, st, N_PAIRS)
            p.update(trials=N_PAIRS, runs_s=[round(w, 3) for w in walls],
                     peak_rss_all_processes_mb=_mb(max(peaks)), runs_peak_rss_mb=[_mb(x) for x in peaks],
                     rss_before_mb=_mb(baseline), driver_rss_before_mb=_mb(driver_before))
            # Once more, untimed, sampling PSS too: summed RSS counts every shared page
            # (libraries, Ray's agents' common code) once per process.
            with RssSampler(0.1, pss=True) as rss:
                sweep(SmaCrossoverVector, pairs)
            p["untimed_run_peak_pss_all_processes_mb"] = _mb(rss.peak_pss)
            p["untimed_run_peak_rss_all_processes_mb"] = _mb(rss.peak)
            out["pairs_4851"] = p
    finally:
        pool.close()
        ray.shutdown()
    return out


def vectorbt(b: Bundle, with_pairs: bool) -> dict[str, Any] | str:
    """``bench_vector_vbt.py`` in ``$VBT_PYTHON`` on this bundle's bars: the grid, and the pairs if asked."""
    exe = os.environ.get("VBT_PYTHON")
    if not exe:
        return "not run (set VBT_PYTHON)"
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rbt-vbt-") as tmp:
        data = Path(tmp) / "bars.npz"
        np.savez(data, close=b.close, open=b.open, capital=CAPITAL, fast=[p["fast"] for p in GRID],
                 slow=[p["slow"] for p in GRID], windows=np.asarray(PAIR_WINDOWS))
        for mode in ("grid", "combs") if with_pairs else ("grid",):
            r = subprocess.run([exe, str(HERE / "bench_vector_vbt.py"), str(data), mode], capture_output=True,
                               text=True)
            if r.returncode:
                out[mode] = f"failed (rc {r.returncode}): {r.stderr.strip().splitlines()[-1:]}"
            else:
                out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    if not with_pairs:
        out["combs"] = "not run (pass --vbt-pairs; needs ~20 GB)"
    return out


def our_entries(b: Bundle) -> int:
    """Bars where the 400 grid trials' weight goes from 0 to positive, all assets: our entry count.

    Computed here from a plain cumulative-sum SMA, independently of the package, to set
    beside vectorbt's entry count (they differ only where the first valid bar is
    already "up": that is an entry for us, not a crossing for vectorbt).
    """
    close = b.close
    c = np.nancumsum(np.nan_to_num(close), axis=0)
    c = np.vstack([np.zeros((1, close.shape[1])), c])
    nan = np.vstack([np.zeros((1, close.shape[1])), np.cumsum(np.isnan(close), axis=0)])

    def sma(w: int) -> np.ndarray:
        m = np.full(close.shape, np.nan)
        m[w - 1:] = (c[w:] - c[:-w]) / w
        m[w - 1:][(nan[w:] - nan[:-w]) > 0] = np.nan
        return m

    cache: dict[int, np.ndarray] = {}
    total = 0
    for p in GRID:
        f = cache.setdefault(p["fast"], sma(p["fast"]))
        s = cache.setdefault(p["slow"], sma(p["slow"]))
        up = f > s
        total += int((up[1:] & ~up[:-1]).sum() + up[0].sum())
    return total


def in_process(b: Bundle, cache: ArrayCache) -> dict[str, Any]:
    """The 400 trials in this process: batched vs one ``run_vector`` per trial (40 run, extrapolated)."""
    cold = clock(lambda: run_vector_batch(SmaCrossoverVector, b, capital_base=CAPITAL, params_list=GRID,
                                          cache=cache, with_returns=True))
    batched = clock(lambda: run_vector_batch(SmaCrossoverVector, b, capital_base=CAPITAL, params_list=GRID,
                                             cache=cache, with_returns=True), 3)
    sample = GRID[::10]
    single = clock(lambda: [run_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params=p, cache=cache,
                                       with_returns=True) for p in sample])
    return {"grid_400_batched_s": round(batched, 3), "grid_400_batched_cold_cache_s": round(cold, 3),
            "grid_400_one_at_a_time_s": round(single * len(GRID) / len(sample), 3),
            "one_at_a_time_trials_run": len(sample)}


def _cost(s: float, trials: int, n_bars: int) -> dict[str, float]:
    return {"wall_s": round(s, 4), "ms_per_trial": round(1e3 * s / trials, 3),
            "us_per_bar_per_trial": round(1e6 * s / trials / n_bars, 3)}


def kernel_calls(b: Bundle, params: list[dict[str, int]], cache: ArrayCache, repeats: int) -> dict[str, Any]:
    """One kernel call of ``len(params)`` trials two ways, warm cache: median wall and µs per bar per trial.

    ``simulate_vector``: weights and kernel, every trial's fill log kept, no metrics.
    ``run_vector_batch(batch_size=K)``: what a sweep worker runs, metrics and returns included.
    """
    n_bars, K = b.calendar.shape[0], len(params)
    before = tree_rss_bytes(os.getpid())
    with RssSampler() as rss_sim:
        sim = clock(lambda: simulate_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params_list=params,
                                            cache=cache), repeats)
    with RssSampler() as rss_batch:
        batch = clock(lambda: run_vector_batch(SmaCrossoverVector, b, capital_base=CAPITAL, params_list=params,
                                               cache=cache, with_returns=True, batch_size=K), repeats)
    return {"simulate_vector": {**_cost(sim, K, n_bars), "driver_peak_rss_mb": _mb(rss_sim.peak)},
            "run_vector_batch": {**_cost(batch, K, n_bars), "driver_peak_rss_mb": _mb(rss_batch.peak)},
            "driver_rss_before_mb": _mb(before)}


def per_k(b: Bundle, cache: ArrayCache) -> dict[str, Any]:
    """K = 1, 8, 64, 512 trials of the grid (512: the grid and its first 112 again) in one kernel call."""
    # Single calls of a few ms are at the mercy of the scheduler: more repeats for the small K.
    return {str(K): kernel_calls(b, [GRID[i % len(GRID)] for i in range(K)], cache, 9 if K <= 8 else 3)
            for K in (1, 8, 64, 512)}


def per_assets(trials: int, quick: bool) -> dict[str, Any] | str:
    """``trials`` grid trials in one kernel call (both ways) on 8, 100 and ~500 S&P 500 symbols."""
    if not SP500.is_dir():
        return f"not run ({SP500} absent)"
    names = sorted(p.name[: -len(".csv.gz")] for p in SP500.glob("*.csv.gz"))
    hundred = SYMBOLS + [s for s in names if s not in SYMBOLS][: 100 - len(SYMBOLS)]
    sets: list[tuple[str, list[str] | None]] = [("8", SYMBOLS), ("100", hundred)]
    if not quick:
        sets.append(("all", None))
    params = GRID[:trials]
    out: dict[str, Any] = {"trials": trials}
    for label, symbols in sets:
        loaded = load_sp500(symbols)
        assert loaded is not None
        b = loaded[0]
        cache = ArrayCache()  # 2 GB, 128 arrays: the ~42 averages of 64 grid trials fit at 500 assets
        for p in params:  # the indicators first: the timing is the weights and the kernel
            algo, _ = make_instance(SmaCrossoverVector, b, p, cache)
            algo.weights()
        n_bars, n_assets = b.calendar.shape[0], len(b.assets)
        d = kernel_calls(b, params, cache, 3 if n_assets <= 100 else 1)
        for v in d.values():
            if isinstance(v, dict):
                v["us_per_bar_per_trial_per_asset"] = round(v["us_per_bar_per_trial"] / n_assets, 4)
        out[label] = {"assets": n_assets, "bars": n_bars, **d}
        del b, cache
    if quick:
        out["all"] = "skipped (--quick)"
    return out


def one_trial(b: Bundle, cache: ArrayCache) -> dict[str, Any]:
    """fast=10, slow=50: µs per bar of the vectorized run and the event loop (``run_metrics``)."""
    n_bars, p = b.calendar.shape[0], {"fast": 10, "slow": 50}
    vec = clock(lambda: run_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params=p, cache=cache), 5)
    cached = clock(lambda: run_metrics(SmaCrossoverCached, b, capital_base=CAPITAL, params=p, cache=cache), 5)
    natural = clock(lambda: run_metrics(SmaCrossover, b, capital_base=CAPITAL, params=p, cache=cache), 3)
    m_vec, _ = run_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params=p, cache=cache)
    m_ev, _ = run_metrics(SmaCrossoverCached, b, capital_base=CAPITAL, params=p, cache=cache)
    return {"vectorized": round(1e6 * vec / n_bars, 2), "event_SmaCrossoverCached": round(1e6 * cached / n_bars, 2),
            "event_SmaCrossover": round(1e6 * natural / n_bars, 2),
            "cached_over_vectorized": round(cached / vec, 2), "natural_over_vectorized": round(natural / vec, 2),
            "same_final_value": bool(np.isclose(m_vec["final_value"], m_ev["final_value"], rtol=1e-9))}


def cold_start() -> dict[str, Any]:
    """Two fresh interpreters, one after the other, sharing a new empty ``NUMBA_CACHE_DIR``."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rbt-numba-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        for label in ("first_process", "second_process"):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, env=env, check=True)
            d = {k: round(v, 4) if isinstance(v, float) else v for k, v in json.loads(r.stdout).items()}
            d["process_wall_s"] = round(time.perf_counter() - t, 3)
            out[label] = d
    out["first_over_second_trial_in_process"] = round(out["first_process"]["first_trial_s"]
                                                      / out["first_process"]["second_trial_s"], 2)
    return out


def main() -> None:
    """Run every section and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip SmaCrossover through Ray, the 4,851 pairs and the ~500-symbol bundle")
    parser.add_argument("--repeats", type=int, default=3, help="vector sweeps after the first (median)")
    parser.add_argument("--asset-trials", type=int, default=64)
    parser.add_argument("--vbt-pairs", action="store_true", help="also run vectorbt on the 4,851 pairs (~20 GB)")
    args = parser.parse_args()
    b, source = load_workload()
    cache = ArrayCache()
    out: dict[str, Any] = {
        "benchmark": "bench_vector", "date": time.strftime("%Y-%m-%d"), "quick": args.quick,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "data": {"source": source, "bars": int(b.calendar.shape[0]), "assets": len(b.assets)},
    }
    rays = ray_sweeps(b, args.quick, args.repeats)
    vbt = vectorbt(b, args.vbt_pairs)
    pairs = rays.pop("pairs_4851")
    vec_s = rays["vector_SmaCrossoverVector"]["wall_s"]
    ratios: dict[str, Any] = {"cached_over_vector": round(rays["event_SmaCrossoverCached"]["wall_s"] / vec_s, 2)}
    if isinstance(rays["event_SmaCrossover"], dict):
        ratios["natural_over_vector"] = round(rays["event_SmaCrossover"]["wall_s"] / vec_s, 2)
    if isinstance(rays.get("event_natural_nanmean_can_trade"), dict):
        ratios["nanmean_can_trade_over_vector"] = round(rays["event_natural_nanmean_can_trade"]["wall_s"] / vec_s, 2)
    vbt_grid = vbt.get("grid") if isinstance(vbt, dict) else None
    if isinstance(vbt_grid, dict):
        ratios["vectorbt_over_vector"] = round(vbt_grid["wall_s"] / vec_s, 2)
        vbt_grid["our_entries"] = our_entries(b)
    out["sweep_400"] = {"trials": len(GRID), "workers": 2, **rays,
                        "vectorbt": vbt_grid if vbt_grid is not None else vbt, "ratios": ratios}
    vbt_combs = vbt.get("combs") if isinstance(vbt, dict) else vbt
    if isinstance(pairs, dict) and isinstance(vbt_combs, dict):
        pairs["vectorbt_over_vector"] = round(vbt_combs["wall_s"] / pairs["wall_s"], 2)
    out["pairs_4851"] = pairs if not isinstance(pairs, dict) else {**pairs, "vectorbt": vbt_combs}
    out["in_process"] = in_process(b, cache)
    out["per_trial_vs_K"] = per_k(b, cache)
    out["one_trial_us_per_bar"] = one_trial(b, cache)
    out["per_trial_vs_assets"] = per_assets(args.asset_trials, args.quick)
    out["cold_start"] = cold_start()
    out["targets"] = {
        "sweep_400_vector_le_1s": vec_s <= 1.0,
        "vector_ge_6x_faster_than_vectorbt": (ratios["vectorbt_over_vector"] >= 6
                                              if "vectorbt_over_vector" in ratios else None),
        "pairs_4851_le_5s": pairs["wall_s"] <= 5.0 if isinstance(pairs, dict) else None,
        "pairs_4851_peak_rss_le_2gb": (pairs["peak_rss_all_processes_mb"] <= 2048
                                       if isinstance(pairs, dict) else None),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
