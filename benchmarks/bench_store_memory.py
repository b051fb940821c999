"""Issue 11: a results store's memory against the trials written, without Ray: flat, not linear.

Writes ``--trials`` (default 1,000,000) records (``bench_store_resume``'s shape, 16-bar
returns) into a ``ResultStore``, 1,000 a call, as a sweep's driver would, while a thread samples
this process's anonymous RSS (``RssAnon``: the heap; the page cache that holds the shards, the
returns and the key index's sorted run is not in it) every 10 ms. Prints one JSON object: per
100,000 trials, RssAnon at that point and the peak since the previous point (the key index's
merges, every 65,536 trials, are the peaks), and the slopes of both between the first and the
last point, in bytes a trial.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store_resume import JOB, records  # noqa: E402

from rustybt_ray.optimize.store import ResultStore  # noqa: E402


def rss_anon_mb() -> float:
    """This process's anonymous resident memory (``RssAnon``) in MB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("RssAnon"))


def main() -> None:
    """Write the store, sampling memory; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000, help="trials between two reported points")
    args = parser.parse_args()
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon_mb())
            time.sleep(0.01)

    tmp = Path(tempfile.mkdtemp(prefix="rbt-storemem-"))
    points = []
    t0 = time.perf_counter()
    try:
        store = ResultStore(tmp / "s", job=JOB, param_names=["fast", "slow"])
        returns = np.zeros(16, dtype=np.float32)
        base = rss_anon_mb()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        for lo in range(0, args.trials, 1000):
            store.append(records(lo, min(args.trials, lo + 1000), returns))
            n = min(args.trials, lo + 1000)
            if n % args.every == 0 or n == args.trials:
                points.append({"trials": n, "rss_anon_mb": round(rss_anon_mb(), 1), "peak_since_last_mb": round(peak[0], 1)})
                peak[0] = 0.0
        store.close()
        stop.set()
        thread.join()
        index_bytes = (tmp / "s" / "keys.index").stat().st_size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first, last = points[0], points[-1]
    span = last["trials"] - first["trials"]
    out = {
        "benchmark": "bench_store_memory", "date": time.strftime("%Y-%m-%d"), "trials": args.trials,
        "wall_s": round(time.perf_counter() - t0, 1), "rss_anon_before_mb": round(base, 1), "points": points,
        "slope_rss_bytes_per_trial": round((last["rss_anon_mb"] - first["rss_anon_mb"]) * 2**20 / span, 2),
        "slope_peak_bytes_per_trial": round((last["peak_since_last_mb"] - first["peak_since_last_mb"]) * 2**20 / span, 2),
        "key_index_file_bytes": index_bytes,
        "key_index_in_memory_note": "one 32-byte key per 256 trials (the fence) + at most 65,536 recent keys",
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
