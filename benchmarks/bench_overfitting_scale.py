"""Out-of-core DSR + PBO (rustybt_ray.optimize.overfitting_scale) on synthetic store-like sweeps.

Each size runs in its own process (so ``ru_maxrss`` is that size's peak): seeded
float32 (chunk x 2,516) returns are generated chunk by chunk, as
``ResultStore.iter_returns`` reads them, so nothing of the 10 GB of a
1,000,000-trial sweep is ever held.  Phases, timed separately:

* ``generate_s``: producing the chunks alone (the stand-in for reading the store);
* ``stream_s``: the one pass over the returns (generation included): per-trial
  Sharpe (DSR) and CSCV block statistics, best returns kept;
* ``dsr_s``: the DSR from those;
* ``cscv_select_s`` / ``cscv_rank_s``: the two CSCV kernels over all 12,870
  combinations of 16 blocks.

At 10k the in-memory NumPy path (``OptimizationResult.overfitting``'s) is timed
too and the two reports compared.  Memory is ``ru_maxrss`` (the process's
peak resident set, monotone: after warm-up, after the stream pass, at the end);
tracemalloc is not used because its allocation hooks slow numba's parallel
kernels several times over.  Prints one JSON object and writes it to
benchmarks/results/overfitting_scale.json.

    .venv/bin/python benchmarks/bench_overfitting_scale.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rustybt_ray.files import atomic_write

BARS = 2516
CHUNK = 2048
BEST = 17


def _chunks(n: int, seed: int = 0):
    """A chunks() callable: seeded float32 (c x BARS) trials, with a per-trial drift, generated on demand."""
    def gen():
        rng = np.random.default_rng(seed)
        buf = np.empty((CHUNK, BARS), dtype=np.float32)
        for lo in range(0, n, CHUNK):
            c = min(CHUNK, n - lo)
            out = buf[:c]
            rng.standard_normal(out.shape, dtype=np.float32, out=out)
            out *= np.float32(0.01)
            out += rng.normal(0.0, 0.0003, (c, 1)).astype(np.float32)
            yield np.arange(lo, lo + c, dtype=np.int64), out
    return gen


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(n: int) -> dict:
    """Time every phase for ``n`` trials in this process."""
    import numba

    from rustybt_ray.optimize import overfitting as ov
    from rustybt_ray.optimize import overfitting_scale as osc

    out: dict = {"n_trials": n, "bars": BARS, "chunk_rows": CHUNK, "threads": numba.get_num_threads()}
    # Compile (or load numba's cache) on a tiny sweep so no phase pays for it.
    t = time.perf_counter()
    osc.report_from_chunks(_chunks(64, 1), 3)
    out["warmup_s"] = round(time.perf_counter() - t, 3)
    out["rss_after_warmup_mb"] = round(_rss_mb(), 1)

    t = time.perf_counter()
    for _ in _chunks(n)():
        pass
    out["generate_s"] = round(time.perf_counter() - t, 3)

    t = time.perf_counter()
    stats = osc.stream_stats(_chunks(n), BEST, 16)
    out["stream_s"] = round(time.perf_counter() - t, 3)
    out["rss_after_stream_mb"] = round(_rss_mb(), 1)

    t = time.perf_counter()
    nv = stats.numbers.size
    dsr = ov.deflated_sharpe_ratio(stats.best_returns, nv, float(np.var(stats.sharpes, ddof=1)))
    out["dsr_s"] = round(time.perf_counter() - t, 4)

    k = osc._kernels()
    masks = ov._combinations(16, None, 0)
    idx = np.ascontiguousarray(ov._mask_indices(masks), dtype=np.int64)
    m = (BARS // 16) * 8
    consts = (1.0 / m, 1.0 / (m - 1), ov._VAR_RTOL * (m - 1) / m)
    n_ranges = min(idx.shape[0], 4 * numba.get_num_threads())
    t = time.perf_counter()
    k["select"](stats.block_sum, stats.block_sq, stats.shift, idx, *consts, osc._TILE, n_ranges)
    out["cscv_select_s"] = round(time.perf_counter() - t, 3)
    # The whole CSCV (select + chosen OOS + rank + PBO), as report_from_chunks runs it.
    t = time.perf_counter()
    pbo = osc.cscv_from_block_stats(stats.block_sum, stats.block_sq, stats.shift, BARS // 16, masks,
                                    stats.rows_dropped)
    total = time.perf_counter() - t
    out["cscv_rank_s"] = round(total - out["cscv_select_s"], 3)
    out["cscv_s"] = round(total, 3)
    out["pairs_per_s"] = round(2 * idx.shape[0] * nv / total)
    out["block_stats_mb"] = round((stats.block_sum.nbytes + stats.block_sq.nbytes) / 2**20, 1)
    out["peak_rss_mb"] = round(_rss_mb(), 1)
    out["total_s"] = round(out["stream_s"] + out["dsr_s"] + out["cscv_s"], 2)
    out.update(dsr=dsr.dsr, pbo=pbo.pbo, n_combinations=pbo.n_combinations)

    if n <= 20_000:
        # The in-memory NumPy path (what OptimizationResult.overfitting() runs) for comparison.
        del stats
        rows = np.concatenate([c.astype(np.float64) for _, c in _chunks(n)()])
        t = time.perf_counter()
        ref = ov.overfitting_report(np.column_stack(list(rows)), best=BEST, n_splits=16)
        out["numpy_in_memory_s"] = round(time.perf_counter() - t, 3)
        del rows
        got = osc.report_from_chunks(_chunks(n), BEST)
        out["equal_to_numpy"] = all(
            got[key] == ref[key] if isinstance(ref[key], int) else abs(got[key] - ref[key]) <= 1e-12 * abs(ref[key])
            for key in ref)
    return out


def main() -> None:
    """Run each size in a subprocess, print one JSON object, write benchmarks/results/overfitting_scale.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    runs = []
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True,
                              check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result = {"benchmark": "overfitting_scale", "cpus": os.cpu_count(), "runs": runs}
    text = json.dumps(result, indent=2)
    print(text)
    path = Path(__file__).resolve().parent / "results" / "overfitting_scale.json"
    with atomic_write(path) as fh:
        fh.write((text + "\n").encode())


if __name__ == "__main__":
    main()
