"""Benchmark bundle ingest and load on the real data sets; prints one JSON document.

Usage::

    python benchmarks/bench_bundle.py [--repeats 7] [--data /work/shared/data]

For each set: the median time to ingest it from CSV (read, validate, write), the
time of the first load in a fresh interpreter (``load_cold_s``, imports excluded),
the median load with the in-process cache disabled (``load_warm_s``: real Parquet
reads, SHA-256 verified), the same without verification, and a cache hit.
Skips, with a message, when the data directory is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETS = {"daily": "mag7_daily_yf_2005_2025", "hourly": "mag7_hourly_yf_2023_2026"}

_COLD = """
import sys, time
from rustybt_ray.data import load_bundle
t = time.perf_counter()
load_bundle(sys.argv[1], root=sys.argv[2])
print(time.perf_counter() - t)
"""


def _median(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_set(name: str, source: Path, root: Path, repeats: int) -> dict[str, Any]:
    """Timings for one data set (ingested as bundle ``name`` under ``root``)."""
    from rustybt_ray.data import ingest_bundle, load_bundle

    info = ingest_bundle(name, source, root=root)  # also warms the code paths
    ingest = _median(lambda: ingest_bundle(name, source, root=root), repeats)
    cold = subprocess.run(
        [sys.executable, "-c", _COLD, name, str(root)], capture_output=True, text=True, check=True
    )
    warm = _median(lambda: load_bundle(name, root=root, cache=False), repeats)
    warm_unverified = _median(lambda: load_bundle(name, root=root, cache=False, verify=False), repeats)
    load_bundle(name, root=root)
    cached = _median(lambda: load_bundle(name, root=root), repeats)
    bundle = load_bundle(name, root=root)
    return {
        "source": str(source),
        "symbols": len(bundle.symbols),
        "bars": bundle.shape[0],
        "rows": info.rows,
        "frequency": info.frequency,
        "parquet_bytes": info.data_bytes,
        "ingest_csv_s": round(ingest, 4),
        "load_cold_s": round(float(cold.stdout.strip()), 4),
        "load_warm_s": round(warm, 4),
        "load_warm_unverified_s": round(warm_unverified, 4),
        "load_cached_s": round(cached, 6),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RUSTYBT_BENCH_DATA", "/work/shared/data")))
    args = parser.parse_args(argv)
    missing = [d for d in SETS.values() if not (args.data / d).is_dir()]
    if missing:
        print(json.dumps({"skipped": f"data sets not found under {args.data}: {', '.join(missing)}"}))
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-bundles-"))
    try:
        results = {key: bench_set(key, args.data / d, root, args.repeats) for key, d in SETS.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"repeats": args.repeats, "python": sys.version.split()[0], **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
