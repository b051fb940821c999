"""Issue 11: what a resume over a results store of a million trials costs, before any trial runs.

Writes ``--trials`` (default 1,000,000) records with 16-bar float32 returns into a
``ResultStore`` (as a sweep's driver would, 1,000 a call), then, in this process, measures:
opening it to resume (the repair pass and the sorted key index, the store's journal), the
key lookups a resume makes (every trial's key, ``in``), and 10,000 ``get`` calls (the rows a
resume reads back to answer reused trials), with the driver's RSS. For scale, the same for
the JSON-lines ``TrialJournal`` at ``--journal-trials`` (default 100,000) records. One JSON object.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rustybt_ray.optimize.journal import TrialJournal
from rustybt_ray.optimize.store import ResultStore

JOB = {"strategy": "bench.Sma:0", "bundle_version": "v1", "start": "2015-01-01", "end": "2024-12-31"}
METRICS = ["sharpe", "cagr", "max_drawdown", "final_value", "total_return", "sortino", "calmar", "n_trades"]


def rss_mb() -> float:
    """This process's VmRSS in MB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS"))


def key(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


def records(lo: int, hi: int, returns: np.ndarray) -> list[dict[str, Any]]:
    return [{"key": key(i), "number": i, "params": {"fast": i % 50 + 2, "slow": i % 300 + 60},
             "metrics": {m: float(i % 997) / 97.0 for m in METRICS}, "status": "complete", "error": None,
             "duration_s": 0.01, "worker": i % 2, "attempts": 1, "returns": returns} for i in range(lo, hi)]


def write(make: Any, n: int, returns: np.ndarray) -> float:
    t = time.perf_counter()
    sink = make()
    for lo in range(0, n, 1000):
        sink.append(records(lo, min(n, lo + 1000), returns))
    sink.close()
    return time.perf_counter() - t


def measure_open(make: Any, n: int) -> dict[str, Any]:
    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    sink = make()
    opened = time.perf_counter() - t
    keys = [key(i) for i in range(n)]
    t = time.perf_counter()
    found = sum(k in sink for k in keys)
    lookups = time.perf_counter() - t
    rng = np.random.default_rng(0)
    sample = [keys[i] for i in rng.integers(0, n, 10_000)]
    t = time.perf_counter()
    got = sum(sink.get(k) is not None for k in sample)
    gets = time.perf_counter() - t
    out = {"records": n, "open_s": round(opened, 2), "lookup_all_keys_s": round(lookups, 2), "found": found,
           "get_10k_s": round(gets, 2), "got": got, "driver_rss_growth_mb": round(rss_mb() - before, 1)}
    sink.close()
    return out


def main() -> None:
    """Write, then reopen and look up, a store and a JSON-lines journal; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--journal-trials", type=int, default=100_000)
    args = parser.parse_args()
    returns = np.linspace(-0.01, 0.01, 16, dtype=np.float32)
    base = Path(tempfile.mkdtemp(prefix="rbt-resume-"))
    try:
        store = base / "store"
        out: dict[str, Any] = {"benchmark": "bench_store_resume", "date": time.strftime("%Y-%m-%d"),
                               "returns_bars": int(returns.size)}
        out["store_write_s"] = round(write(lambda: ResultStore(store, job=JOB, param_names=["fast", "slow"]),
                                           args.trials, returns), 1)
        out["store"] = measure_open(lambda: ResultStore(store, job=JOB, param_names=["fast", "slow"]), args.trials)
        journal = base / "journal.jsonl"
        out["journal_write_s"] = round(write(lambda: TrialJournal(journal), args.journal_trials, returns), 1)
        out["journal"] = measure_open(lambda: TrialJournal(journal), args.journal_trials)
        j, s = out["journal"], out["store"]
        out["open_s_per_million_records"] = {"store": round(s["open_s"] * 1e6 / s["records"], 2),
                                             "journal_jsonl": round(j["open_s"] * 1e6 / j["records"], 2)}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
