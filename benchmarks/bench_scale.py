"""Issue 11: a million-trial random sweep out of core, the driver's memory flat, killed and resumed.

Workload: ``SmaSizedVector`` (``bench_scale_baseline.py``: the vectorized SMA crossover with a
continuous ``invested`` fraction, so every trial is distinct) on the demo bundle (8 symbols),
2015-01-01..2024-12-31 (2,516 bars), capital 1,000,000, default costs, per-bar returns on,
``RandomSearchAlgorithm(seed=0)`` over fast 2..100, slow 5..400 (fast < slow), invested
0.5..1, 2 Ray workers whose kernel is loaded. Every sweep writes a results store
(``run(..., store=DIR)``) and runs in a fresh driver process (Ray, pool, a 500-trial warm-up
sweep, then the measured one).

Per trial count (``--trials``, default 10000,100000,1000000): trials/s; the driver's VmRSS
before, at peak (sampled every 50 ms) and after, and its growth per trial; the peak RSS summed
over the driver and every process it started (Ray's included; shared pages counted once per
process: an overstatement); bytes on disk per trial; seconds for ``len``, ``top(10)``, ``best``,
a filter, ``to_parquet`` and ``overfitting()`` (with the driver's peak RSS during it).

Then the largest sweep again, its driver SIGKILLed (with its Ray) once about half of the
trials are committed, and resumed into the same store by a new driver: trials lost (numbers
missing), duplicated (numbers twice), trials run by the resume, and rows that differ from
the undisturbed sweep's (params, metrics, status; exact equality). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale_baseline import Sampler, driver_rss, make_space, mb, start_pool, timed  # noqa: E402

from rustybt_ray.data import load_bundle  # noqa: E402

START, END = "2015-01-01", "2024-12-31"
CAPITAL = 1_000_000.0
SEED = 0


def optimizer(pool: Any, config: Any, n: int) -> tuple[type, Any]:
    """The strategy and the seeded random search of ``n`` trials."""
    from rustybt_ray.optimize import ParallelOptimizer, RandomSearchAlgorithm

    strategy, space = make_space("distinct")
    pool.clear_cache()
    gc.collect()
    return strategy, ParallelOptimizer(RandomSearchAlgorithm(space, n_trials=n, seed=SEED), pool=pool,
                                       config=config, progress=False)


def disk_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def committed_rows(path: Path) -> int:
    """Rows in the store's committed shards (what a reader sees)."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in (path / "trials").glob("part-*.parquet"))


def child(job: str) -> dict[str, Any]:
    """``sweep:N:DIR[:bare]`` in this fresh process: the sweep into the store DIR (``bare``: no operations after)."""
    import polars as pl
    import ray

    from rustybt_ray.config import OptimizationConfig

    _, n_text, directory, *flags = job.split(":")
    n, store = int(n_text), Path(directory)
    demo = load_bundle("demo")
    pool, config, startup = start_pool(OptimizationConfig())
    out: dict[str, Any] = {"startup": startup, "driver_rss_with_pool_up_mb": mb(driver_rss())}
    try:
        with tempfile.TemporaryDirectory(prefix="rbt-warm-") as warm:
            strategy, opt = optimizer(pool, config, 500)
            opt.run(strategy, demo, START, END, capital_base=CAPITAL, store=Path(warm) / "s")
        gc.collect()
        strategy, opt = optimizer(pool, config, n)
        print("started", flush=True)
        with Sampler() as s:
            wall, result = timed(lambda: opt.run(strategy, demo, START, END, capital_base=CAPITAL, store=store))
        stats = opt.last_stats
        out.update({
            "trials": n, "trials_run": stats.trials, "wall_s": round(wall, 1), "trials_per_s": round(n / wall, 1),
            "batches": stats.batches, "driver_busy_s": round(stats.driver_busy_s, 1),
            "driver_rss_before_mb": mb(s.before), "driver_rss_peak_mb": mb(s.peak), "driver_rss_after_mb": mb(s.after),
            "driver_growth_peak_mb": mb(s.peak - s.before),
            "driver_growth_bytes_per_trial": round((s.peak - s.before) / n, 1),
            "driver_rss_parts_mb": s.parts_mb(), "peak_rss_all_processes_mb": mb(s.tree_peak),
            "disk_bytes_per_trial": round(disk_bytes(store) / n, 1), "disk_total_mb": mb(disk_bytes(store)),
        })
        if "bare" in flags:
            return out
        ops: dict[str, Any] = {}
        ops["len_s"], length = (round(v, 4) if isinstance(v, float) else v for v in timed(lambda: len(result)))
        ops["len"] = length
        ops["top10_s"] = round(timed(lambda: result.top(10))[0], 3)
        ops["best_s"] = round(timed(lambda: result.best)[0], 3)
        ops["filter_s"], rows = timed(lambda: result.filter(pl.col("sharpe") > 1.0).height)
        ops["filter_s"], ops["filter_rows"] = round(ops["filter_s"], 3), rows
        with tempfile.TemporaryDirectory(prefix="rbt-pq-", dir=store.parent) as tmp:
            with Sampler(tree=False) as sp:
                ops["to_parquet_s"] = round(timed(lambda: result.to_parquet(Path(tmp) / "r.parquet"))[0], 2)
            ops["to_parquet_driver_peak_mb"] = mb(sp.peak)
            ops["parquet_bytes_per_trial"] = round((Path(tmp) / "r.parquet").stat().st_size / n, 1)
        gc.collect()
        try:
            with Sampler(tree=False) as so:
                secs, rep = timed(lambda: result.overfitting())
        except Exception as exc:  # noqa: BLE001 - reported: the sweep's numbers still stand
            ops["overfitting"] = f"{type(exc).__name__}: {exc}"
            out["ops"] = ops
            return out
        ops["overfitting"] = {"s": round(secs, 1), "driver_rss_before_mb": mb(so.before),
                              "driver_peak_mb": mb(so.peak), "driver_peak_delta_mb": mb(so.peak - so.before),
                              **{k: rep[k] for k in ("pbo", "dsr", "n_trials", "n_with_returns",
                                                     "n_constant_returns", "n_combinations", "best_number")}}
        out["ops"] = ops
        return out
    finally:
        pool.close()
        ray.shutdown()


def run_child(job: str) -> dict[str, Any]:
    """``child(job)`` in a new interpreter; its JSON, or the error's tail."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--one", job], capture_output=True, text=True)
    if r.returncode:
        return {"error": f"rc {r.returncode}", "stderr_tail": r.stderr.strip().splitlines()[-8:]}
    out = json.loads(r.stdout.split("started\n", 1)[-1])
    out["process_wall_s"] = round(time.perf_counter() - t, 1)
    return out


def killed_and_resumed(n: int, base: Path, reference: Path | None) -> dict[str, Any]:
    """The sweep of ``n`` killed (SIGKILL, driver and its Ray) at ~n/2 committed trials, then resumed."""
    import polars as pl

    store = base / "killed"
    proc = subprocess.Popen([sys.executable, __file__, "--one", f"sweep:{n}:{store}:bare"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.perf_counter()
    try:
        while committed_rows(store) < n // 2 if (store / "trials").is_dir() else True:
            if proc.poll() is not None:
                return {"error": f"the driver ended before it was killed (rc {proc.returncode})"}
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_after = time.perf_counter() - t0
    at_kill = committed_rows(store)
    resumed = run_child(f"sweep:{n}:{store}:bare")
    out: dict[str, Any] = {"killed_after_s": round(killed_after, 1), "committed_at_kill": at_kill,
                           "resume": resumed}
    t = pl.scan_parquet(sorted((store / "trials").glob("part-*.parquet")))
    numbers = t.select(pl.col("number")).collect()["number"]
    out["rows"] = int(numbers.len())
    out["lost"] = int(n - numbers.unique().len())
    out["duplicated"] = int(numbers.len() - numbers.unique().len())
    out["out_of_range"] = int(((numbers < 0) | (numbers >= n)).sum())
    if reference is not None:
        skip = {"key", "duration_s", "worker", "attempts", "returns_offset", "returns_len", "lost", "error"}
        ref = pl.scan_parquet(sorted((reference / "trials").glob("part-*.parquet")))
        cols = [c for c in ref.collect_schema().names() if c not in skip]
        joined = ref.select(cols).join(t.select(cols), on="number", how="full", suffix="_r", nulls_equal=True)
        diff = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_r")) for c in cols if c != "number"])
        out["rows_differing_from_undisturbed"] = int(joined.filter(diff).select(pl.len()).collect().item())
        out["compared_columns"] = cols
    return out


def main() -> None:
    """Each sweep in its own driver process, then the kill-and-resume; one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="10000,100000,1000000", help="comma-separated trial counts")
    parser.add_argument("--quick", action="store_true", help="trials 2000,10000 (and the kill at 10000)")
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temporary directory)")
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one sweep (see child)
    args = parser.parse_args()
    if args.one:
        out = child(args.one)
        return print(json.dumps(out, indent=1, default=str))
    counts = [2000, 10000] if args.quick else [int(x) for x in args.trials.split(",")]
    base = Path(args.dir or tempfile.mkdtemp(prefix="rbt-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    demo = load_bundle("demo")
    i0, i1 = demo.index_range(START, END)
    out: dict[str, Any] = {
        "benchmark": "bench_scale", "date": time.strftime("%Y-%m-%d"), "quick": args.quick,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "mem_total_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
                    "load_average_at_start": os.getloadavg()},
        "workload": {"strategy": "SmaSizedVector", "bundle": "demo", "assets": len(demo.assets),
                     "bars": i1 - i0, "start": START, "end": END, "workers": 2, "returns": "on", "seed": SEED,
                     "store": "run(..., store=DIR)", "driver": "a fresh process per sweep: Ray + 2-actor pool, "
                     "a 500-trial warm-up sweep"},
        "sweeps": {},
    }
    for n in counts:
        out["sweeps"][str(n)] = run_child(f"sweep:{n}:{base / str(n)}")
        if n != counts[-1]:
            shutil.rmtree(base / str(n), ignore_errors=True)
        print(json.dumps({str(n): out["sweeps"][str(n)].get("trials_per_s")}), file=sys.stderr, flush=True)
    runs = [out["sweeps"][str(n)] for n in counts]
    if all("error" not in r for r in runs):
        out["driver_rss_peak_mb_by_trials"] = {str(n): r["driver_rss_peak_mb"] for n, r in zip(counts, runs)}
        if len(counts) > 1:
            a, b = runs[-2], runs[-1]
            out["driver_peak_slope_bytes_per_trial_between_last_two"] = round(
                (b["driver_rss_peak_mb"] - a["driver_rss_peak_mb"]) * 2**20 / (counts[-1] - counts[-2]), 2)
    if not args.skip_kill:
        ref = base / str(counts[-1])
        out["killed_and_resumed"] = killed_and_resumed(counts[-1], base, ref if ref.is_dir() else None)
    shutil.rmtree(base / "killed", ignore_errors=True)
    shutil.rmtree(base / str(counts[-1]), ignore_errors=True)
    out["machine"]["load_average_at_end"] = os.getloadavg()
    out["total_s"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
