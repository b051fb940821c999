"""Issue 11 baseline (before the results store; `bench_scale.py` measures the store): the driver's memory and time as a random sweep grows (measure only, main as it is).

Workload: ``SmaCrossoverVector`` on the demo bundle (8 symbols), 2015-01-01..2024-12-31
(2,516 bars), capital 1,000,000, default costs, per-bar returns on (the default), 2 Ray
workers in a pre-started pool whose workers loaded the compiled kernel (as
``bench_vector.py``); caches cleared before every sweep. Each measurement runs in a fresh
driver process (Ray, pool, a 500-trial warm-up sweep, then the measured one), so a sweep's
growth is not hidden by heap an earlier one freed.

Spaces (``--space``): ``brief``, ``RandomSearchAlgorithm(seed=0)`` over fast 2..100, slow
5..400, ``fast < slow``: only 34,548 distinct points, so a big sweep draws points again, and
a repeat is answered from the in-memory journal (``attempts == 0``, sharing its twin's
returns array); ``distinct``, the same plus a continuous ``invested`` in [0.5, 1]
(``SmaSizedVector``, same kernel cost), so every trial runs and keeps its own returns.

Per trial count (``--trials``, default 10000,100000; ``--quick`` 2000,10000): trials/s; the
driver's VmRSS (``/proc/self/status``, every 50 ms in a thread) before, after, at peak,
``(peak - before) / trials``, and its parts (RssAnon: the heap; RssShmem: Ray object store
pages it touched); the object store's use with the result alive (where the returns live);
the peak RSS summed over the driver and its descendants (shared pages counted once per
process: an overstatement); seconds for ``top(10)``, ``best``, ``to_parquet`` (bytes per
trial on disk) and ``overfitting()`` with its own driver peak-RSS delta; the sizes of the
trials table and the returns arrays. Then a 10,000-trial sweep (at most the largest count)
under ``tracemalloc``: the top 10 allocations by file:line held when ``run`` returns (Python
and NumPy memory; not Arrow/polars, not the object store) and the traced peak.

TPE: ``OptunaSearch`` (multivariate TPE, seed 0) of the brief space, ``--tpe-trials``
(3,000; ``--quick`` 500): ask ms per trial in buckets of 500 finished trials (the wrapper
of ``bench_optuna.py``) and the workers' busy fraction (trial run time / workers x wall).

Last, a LINEAR EXTRAPOLATION (stated as such in the JSON) to 1,000,000 trials from the
largest run's bytes per trial that ran. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_optuna import buckets, instrument  # noqa: E402
from bench_vector import tree_rss_bytes as tree_rss  # noqa: E402  (driver + Ray's processes)

from rustybt_ray.data import Bundle, load_bundle  # noqa: E402
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector  # noqa: E402
from rustybt_ray.optimize import ContinuousParameter, DiscreteParameter, ParameterSpace  # noqa: E402

START, END = "2015-01-01", "2024-12-31"
CAPITAL = 1_000_000.0  # as bench_vector.py
SEED = 0
PROJECTED = 1_000_000
PAGE = os.sysconf("SC_PAGE_SIZE")


class SmaSizedVector(SmaCrossoverVector):
    """``SmaCrossoverVector`` investing a continuous fraction ``invested`` of the equal weights.

    Only here so a random sweep draws a million distinct trials (the two windows alone
    have 34,548 points). It trades exactly when the parent does (a threshold on the
    averages could leave a trial flat, and ``overfitting()`` refuses constant returns);
    the cost per trial is the parent's plus one multiply.
    """

    invested = 1.0

    def weights(self) -> np.ndarray:
        """Row t: ``invested / n_assets`` where the fast average is above the slow one, else 0."""
        return np.where(self.sma(self.fast) > self.sma(self.slow), self.invested / self.n_assets, 0.0)


def make_space(kind: str) -> tuple[type, ParameterSpace]:
    """The strategy and space of ``kind`` ("brief" or "distinct")."""
    windows = [DiscreteParameter("fast", 2, 100), DiscreteParameter("slow", 5, 400)]
    if kind == "brief":
        return SmaCrossoverVector, ParameterSpace(windows, constraints=["fast < slow"])
    return SmaSizedVector, ParameterSpace([*windows, ContinuousParameter("invested", 0.5, 1.0)],
                                         constraints=["fast < slow"])


# -- memory sampling -------------------------------------------------------------------------


_PARTS = ("VmRSS", "RssAnon", "RssShmem", "RssFile")


def driver_parts() -> dict[str, int]:
    """This process's resident set in bytes: VmRSS and its parts.

    RssAnon is the driver's own heap; RssShmem the shared memory it has touched, here
    Ray's object store, where a batch's results (and the returns arrays the driver reads
    zero-copy from them) live; RssFile mapped files (libraries).
    """
    out = dict.fromkeys(_PARTS, 0)
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in out:
                out[key] = int(line.split()[1]) * 1024
    return out


def driver_rss() -> int:
    """This process's resident set (VmRSS) in bytes."""
    return driver_parts()["VmRSS"]


def object_store() -> dict[str, Any]:
    """Ray's object store use now (all nodes): MiB and objects, from ``memory_summary(stats_only=True)``."""
    import ray
    from ray._private.internal_api import memory_summary

    # Our own session's address: other Ray instances may run on the machine.
    text = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    m = re.search(r"Plasma memory usage (\d+) MiB, (\d+) objects, ([\d.]+)% full", text)
    fallback = re.search(r"Plasma filesystem mmap usage: (\d+) MiB", text)
    spilled = re.search(r"Spilled (\d+) MiB, (\d+) objects", text)
    return {"used_mb": int(m.group(1)) if m else None, "objects": int(m.group(2)) if m else None,
            "percent_full": float(m.group(3)) if m else None,
            "fallback_mmap_mb": int(fallback.group(1)) if fallback else 0,
            "spilled_mb": int(spilled.group(1)) if spilled else 0}


class Sampler:
    """Every ``interval`` s in a thread: the driver's VmRSS and (if ``tree``) the summed tree RSS; keeps maxima."""

    def __init__(self, interval: float = 0.05, tree: bool = True) -> None:
        self.interval, self.tree = interval, tree
        self.parts_before = driver_parts()
        self.before = self.parts_before["VmRSS"]
        self.parts_peak = dict(self.parts_before)
        self.peak = self.before
        self.tree_peak = tree_rss(os.getpid()) if tree else 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        parts = driver_parts()
        for k, v in parts.items():  # each part's own maximum (they need not peak together)
            self.parts_peak[k] = max(self.parts_peak[k], v)
        self.peak = self.parts_peak["VmRSS"]
        if self.tree:
            self.tree_peak = max(self.tree_peak, tree_rss(os.getpid()))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.parts_after = driver_parts()
        self.after = self.parts_after["VmRSS"]

    def parts_mb(self) -> dict[str, dict[str, float]]:
        """Before / peak / after of each part of the driver's RSS, MiB."""
        return {k: {"before": mb(self.parts_before[k]), "peak": mb(self.parts_peak[k]),
                    "after": mb(self.parts_after[k])} for k in _PARTS[1:]}


def mb(n_bytes: float) -> float:
    """Bytes as MiB, one decimal."""
    return round(n_bytes / 2**20, 1)


def timed(fn: Any) -> tuple[float, Any]:
    """(wall seconds, value) of one call."""
    t = time.perf_counter()
    v = fn()
    return time.perf_counter() - t, v


# -- the sweeps --------------------------------------------------------------------------------


def start_pool(config: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Private Ray with 2 CPUs and a 2-actor pool whose workers have loaded the compiled kernel."""
    import ray

    from rustybt_ray.cluster import WorkerPool
    from rustybt_ray.config import OptimizationConfig

    t0 = time.perf_counter()
    # address="local": a fresh private Ray, never a cluster another process started.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    if config is None:
        config = OptimizationConfig(spill_trials=None)  # the in-memory path this baseline measures
    pool = WorkerPool(2, config, warm_kernel=True)
    pool.info()
    deadline = time.monotonic() + 300
    infos: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # part of the pool's start, as in bench_vector.py
        infos = ray.get([a.info.remote() for a in pool.workers.values()])
        if all(i["kernel_warm_s"] is not None for i in infos):
            break
        time.sleep(0.05)
    return pool, config, {"ray_and_pool_start_s": round(time.perf_counter() - t0, 2),
                          "worker_kernel_load_s": [i["kernel_warm_s"] for i in infos]}


def held_by(result: Any) -> dict[str, Any]:
    """What the result keeps: the trials table and the returns arrays (distinct buffers counted once)."""
    seen: dict[int, int] = {}
    owners: dict[str, int] = {}
    for arr in result.returns.values():
        base = arr if arr.base is None else arr.base
        owners[type(base).__name__] = owners.get(type(base).__name__, 0) + 1
        # A repeat answered from the journal shares its twin's array: count each buffer once.
        seen[id(base)] = max(seen.get(id(base), 0), base.nbytes if isinstance(base, np.ndarray) else arr.nbytes)
    arrays = list(result.returns.values())
    return {"trials_table_mb": mb(result.trials.estimated_size()),
            "trials_table_columns": result.trials.width,
            "returns_entries": len(result.returns), "returns_distinct_buffers": len(seen),
            "returns_memory_owners": owners,
            "returns_dtype": str(arrays[0].dtype) if arrays else None,
            "returns_bars": int(arrays[0].shape[0]) if arrays else 0,
            "returns_mb": mb(sum(seen.values()))}


def fresh_sweep(pool: Any, config: Any, kind: str, n: int) -> tuple[type, Any]:
    """The strategy and a seeded random-search optimizer of ``n`` trials, on a pool with empty caches."""
    from rustybt_ray.optimize import ParallelOptimizer, RandomSearchAlgorithm

    strategy, space = make_space(kind)
    pool.clear_cache()
    gc.collect()
    return strategy, ParallelOptimizer(RandomSearchAlgorithm(space, n_trials=n, seed=SEED), pool=pool,
                                       config=config, progress=False)


def sweep(pool: Any, config: Any, demo: Bundle, kind: str, n: int) -> dict[str, Any]:
    """One random sweep of ``n`` trials and the result's operations, each with its own measurements."""
    strategy, opt = fresh_sweep(pool, config, kind, n)
    with Sampler() as s:
        wall, result = timed(lambda: opt.run(strategy, demo, START, END, capital_base=CAPITAL))
    ran = int((result.trials["attempts"] > 0).sum())
    stats = opt.last_stats
    out: dict[str, Any] = {
        "trials": len(result), "trials_run": ran, "answered_without_running": len(result) - ran,
        "n_complete": result.n_complete, "wall_s": round(wall, 2), "trials_per_s": round(n / wall, 1),
        "trials_run_per_s": round(ran / wall, 1), "batches": stats.batches,
        "driver_busy_s": round(stats.driver_busy_s, 2),
        "driver_rss_before_mb": mb(s.before), "driver_rss_after_mb": mb(s.after),
        "driver_rss_peak_mb": mb(s.peak), "driver_growth_peak_mb": mb(s.peak - s.before),
        "driver_bytes_per_trial": round((s.peak - s.before) / n),
        "driver_bytes_per_trial_run": round((s.peak - s.before) / max(1, ran)),
        "driver_bytes_per_trial_retained": round((s.after - s.before) / n),
        "driver_rss_parts_mb": s.parts_mb(),
        "driver_heap_growth_mb": mb(s.parts_peak["RssAnon"] - s.parts_before["RssAnon"]),
        "peak_rss_all_processes_mb": mb(s.tree_peak), "rss_samples": s.samples,
        "held_by_result": held_by(result), "object_store_with_result_alive": object_store(),
    }
    pinned = (out["object_store_with_result_alive"]["used_mb"] or 0) * 2**20
    out["driver_heap_plus_object_store_bytes_per_trial"] = round(
        (s.parts_peak["RssAnon"] - s.parts_before["RssAnon"] + pinned) / n)
    ops: dict[str, Any] = {}
    ops["top10_s"] = round(timed(lambda: result.top(10))[0], 4)
    ops["best_s"] = round(timed(lambda: result.best)[0], 4)
    with tempfile.TemporaryDirectory(prefix="rbt-scale-") as tmp:
        path = Path(tmp) / "result.parquet"
        ops["to_parquet_s"] = round(timed(lambda: result.to_parquet(path))[0], 3)
        size = path.stat().st_size
        ops["parquet_bytes"], ops["parquet_bytes_per_trial"] = size, round(size / n, 1)
        ops["parquet_note"] = "the trials table only: to_parquet does not write the returns"
    # overfitting() builds a float64 bars x trials matrix (and copies of it): skip it where
    # that would not fit in what the machine has free, rather than start swapping or die.
    need = 4 * 8 * out["held_by_result"]["returns_bars"] * result.n_complete
    avail = _mem_available()
    ops["overfitting"] = (f"skipped: needs ~{mb(need)} MB (4 float64 matrices), {mb(avail)} MB available"
                          if need > 0.7 * avail else overfitting(result))
    out["ops"] = ops
    del result, opt
    gc.collect()
    out["driver_rss_after_release_mb"] = mb(driver_rss())
    out["object_store_after_release"] = object_store()
    return out


def overfitting(result: Any) -> dict[str, Any] | str:
    """``result.overfitting()``: seconds, the driver's peak-RSS delta, PBO and DSR; the error's text if it raises."""
    from rustybt_ray.errors import OverfittingError

    gc.collect()
    try:
        with Sampler(tree=False) as so:
            secs, rep = timed(lambda: result.overfitting())
    except OverfittingError as exc:  # reported, not fatal: the other numbers still stand
        return f"OverfittingError: {exc}"
    return {"s": round(secs, 2), "driver_peak_delta_mb": mb(so.peak - so.before), "driver_peak_mb": mb(so.peak),
            "pbo": round(rep["pbo"], 4), "dsr": round(rep["dsr"], 4), "n_trials": rep["n_trials"],
            "n_with_returns": rep["n_with_returns"]}


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def traced_sweep(pool: Any, config: Any, demo: Bundle, kind: str, n: int) -> dict[str, Any]:
    """The sweep again under tracemalloc (untimed: tracing slows the driver): what is held when run returns."""
    strategy, opt = fresh_sweep(pool, config, kind, n)
    tracemalloc.start(1)
    try:
        result = opt.run(strategy, demo, START, END, capital_base=CAPITAL)
        snap = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    top = [{"where": f"{Path(st.traceback[0].filename).name}:{st.traceback[0].lineno}",
            "file": _short(st.traceback[0].filename), "mb": mb(st.size), "blocks": st.count,
            "bytes_per_trial": round(st.size / n)}
           for st in snap.statistics("lineno")[:10]]
    del result
    return {"space": kind, "trials": n, "traced_held_after_run_mb": mb(current),
            "traced_peak_during_run_mb": mb(peak), "top10_held_by_line": top,
            "note": "tracemalloc counts Python objects and NumPy buffers, not Arrow/polars (Rust) memory"}


def _short(path: str) -> str:
    """A path from the package or site-packages on, not the machine's prefix."""
    for marker in ("rustybt_ray/", "site-packages/", "lib/python"):
        if marker in path:
            return marker + path.split(marker, 1)[1]
    return path


def tpe(pool: Any, config: Any, demo: Bundle, n: int) -> dict[str, Any]:
    """A TPE study of the brief space: ask cost per trial by 500 finished trials, and the workers' busy fraction."""
    import optuna

    from rustybt_ray.optimize import ParallelOptimizer
    from rustybt_ray.optimize.optuna_search import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    strategy, space = make_space("brief")
    pool.clear_cache()
    algo = OptunaSearch(space, n_trials=n, seed=SEED)
    log = instrument(algo)
    opt = ParallelOptimizer(algo, pool=pool, config=config, progress=False)
    with Sampler(tree=False) as s:
        wall, result = timed(lambda: opt.run(strategy, demo, START, END, capital_base=CAPITAL))
    stats = opt.last_stats
    ran = result.trials.filter(result.trials["attempts"] > 0)
    busy = float(ran["duration_s"].sum())
    ask_s = sum(sec for kind, *_, sec in log if kind == "ask")
    tell_s = sum(sec for kind, *_, sec in log if kind == "tell")
    return {"trials": len(result), "trials_run": ran.height, "wall_s": round(wall, 2),
            "trials_per_s": round(len(result) / wall, 1), "batches": stats.batches,
            "worker_busy_fraction": round(busy / (len(pool.workers) * stats.wall_s), 3),
            "driver_busy_s": round(stats.driver_busy_s, 2), "driver_ask_s": round(ask_s, 2),
            "driver_tell_s": round(tell_s, 2), "driver_growth_peak_mb": mb(s.peak - s.before),
            "by_finished_trials": buckets(log, 500, n),
            "note": "asks run in the prefetch thread (8 per worker ahead) while the scheduler waits"}


def extrapolate(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """LINEAR extrapolation to 1,000,000 trials from the largest run (per trial that ran), and slopes between runs."""
    counts = sorted(int(k) for k in runs)
    big = runs[str(counts[-1])]
    ran = max(1, big["trials_run"])
    anon = big["driver_rss_parts_mb"]["RssAnon"]
    heap = (anon["peak"] - anon["before"]) * 2**20 / ran
    store = big["object_store_with_result_alive"]
    pinned = (store["used_mb"] or 0) * 2**20 / ran
    capacity_gb = (store["used_mb"] / store["percent_full"] * 100 / 2**10) if store["percent_full"] else None
    out: dict[str, Any] = {
        "method": f"LINEAR EXTRAPOLATION, not a measurement: the {counts[-1]:,}-trial run's bytes per trial "
                  f"that ran, times {PROJECTED:,} trials that run",
        "driver_heap_bytes_per_trial": round(heap), "object_store_bytes_per_trial": round(pinned),
        "driver_heap_growth_at_1M_gb": round(heap * PROJECTED / 2**30, 2),
        "object_store_pinned_at_1M_gb": round(pinned * PROJECTED / 2**30, 2),
        "object_store_capacity_gb": round(capacity_gb, 2) if capacity_gb else None,
        "returns_float32_alone_at_1M_gb": round(4 * big["held_by_result"]["returns_bars"] * PROJECTED / 2**30, 2),
    }
    if len(counts) > 1:
        a = runs[str(counts[-2])]
        a_anon = a["driver_rss_parts_mb"]["RssAnon"]
        slope = ((anon["peak"] - anon["before"]) - (a_anon["peak"] - a_anon["before"])) * 2**20 / max(
            1, big["trials_run"] - a["trials_run"])
        out["driver_heap_slope_between_runs_bytes_per_trial"] = round(slope)
    of = big["ops"].get("overfitting")
    if isinstance(of, dict):
        out["overfitting_peak_delta_at_1M_gb"] = round(of["driver_peak_delta_mb"] * PROJECTED
                                                       / big["n_complete"] / 2**10, 1)
    return out


def child(job: str) -> dict[str, Any]:
    """One measurement in this (fresh) process: ``sweep:KIND:N``, ``trace:KIND:N`` or ``tpe:N``.

    A fresh driver per measurement, so a sweep's RSS growth is not hidden by heap an
    earlier sweep freed (the allocator keeps it and hands it out again).
    """
    import ray

    what, *rest = job.split(":")
    demo = load_bundle("demo")
    pool, config, startup = start_pool()
    out: dict[str, Any] = {"startup": startup, "driver_rss_with_pool_up_mb": mb(driver_rss())}
    try:
        if what == "tpe":
            out.update(tpe(pool, config, demo, int(rest[0])))
            return out
        kind, n = rest[0], int(rest[1])
        # A small sweep first: lazy imports and first-call costs (the strategy shipped by
        # value, polars/pyarrow paths) stay out of the measured one.
        out["warmup_500_driver_rss_after_mb"] = sweep(pool, config, demo, kind, 500)["driver_rss_after_release_mb"]
        out.update(sweep(pool, config, demo, kind, n) if what == "sweep" else traced_sweep(pool, config, demo, kind, n))
        return out
    finally:
        pool.close()
        ray.shutdown()


def run_child(job: str) -> dict[str, Any]:
    """``child(job)`` in a new interpreter; its JSON, or the error's tail."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--one", job], capture_output=True, text=True)
    if r.returncode:
        return {"error": f"rc {r.returncode}", "stderr_tail": r.stderr.strip().splitlines()[-5:]}
    out = json.loads(r.stdout)
    out["process_wall_s"] = round(time.perf_counter() - t, 1)
    return out


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))


def main() -> None:
    """Run each measurement in its own driver process, then the extrapolation; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="10000,100000", help="comma-separated trial counts")
    parser.add_argument("--quick", action="store_true", help="trials 2000,10000 and a 500-trial TPE study")
    parser.add_argument("--space", choices=("brief", "distinct", "both"), default="both")
    parser.add_argument("--tpe-trials", type=int, default=3000)
    parser.add_argument("--skip-tpe", action="store_true")
    parser.add_argument("--skip-trace", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement (see child)
    args = parser.parse_args()
    if args.one:
        return print(_dump(child(args.one)))
    counts = [2000, 10000] if args.quick else [int(x) for x in args.trials.split(",")]
    tpe_n = 500 if args.quick else args.tpe_trials
    kinds = ["brief", "distinct"] if args.space == "both" else [args.space]
    t_all = time.perf_counter()
    demo = load_bundle("demo")
    i0, i1 = demo.index_range(START, END)
    out: dict[str, Any] = {
        "benchmark": "bench_scale_baseline", "date": time.strftime("%Y-%m-%d"), "quick": args.quick,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "mem_total_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1),
                    "load_average_at_start": os.getloadavg()},
        "workload": {"strategy": "SmaCrossoverVector (brief) / SmaSizedVector (distinct)", "bundle": "demo",
                     "assets": len(demo.assets), "bars": i1 - i0, "start": START, "end": END,
                     "workers": 2, "returns": "on (default)", "seed": SEED,
                     "brief_distinct_points": sum(1 for _ in make_space("brief")[1].grid()),
                     "driver": "a fresh process per measurement: Ray + 2-actor pool, a 500-trial warm-up sweep"},
    }
    for kind in kinds:
        runs = {str(n): run_child(f"sweep:{kind}:{n}") for n in counts}
        out[f"sweeps_{kind}"] = runs
        if all("error" not in r for r in runs.values()):
            out[f"extrapolation_{kind}"] = extrapolate(runs)
    if not args.skip_trace:
        out["tracemalloc"] = run_child(f"trace:{kinds[-1]}:{min(counts[-1], 10_000)}")
    out["tpe"] = "skipped" if args.skip_tpe else run_child(f"tpe:{tpe_n}")
    out["machine"]["load_average_at_end"] = os.getloadavg()
    out["total_s"] = round(time.perf_counter() - t_all, 1)
    print(_dump(out))


if __name__ == "__main__":
    main()
