"""Wide-universe sweep: ``TopKMomentum`` on the ~500-symbol S&P 500 bundle, a grid on 2 Ray workers.

Workload:
- Data: every symbol of ``../shared/data/sp500_daily_yf_2005_2025`` (~500, 2005-10 .. 2025-10),
  ingested by ``scripts/ingest_sp500.py`` (the project's ``ingest_bundle``, lenient: the set
  has one bad row) into a temporary registry; ``--bundle NAME`` uses a registered bundle
  instead. Without ``../shared``, a synthetic random-walk bundle of 500 assets x 5,000 bars.
- Strategy: ``TopKMomentum`` (monthly ``schedule_function``, ``order_target_percent`` per
  asset), default costs, capital 1,000,000.
- Grid: ``top_k`` in ``--top-k`` (10, 25, 50) x ``lookback`` in ``--lookback`` (126, 189,
  252 bars), ``skip`` 21: 9 trials, objective Sharpe.
- ``ParallelOptimizer`` with ``--workers`` (2) actors on a local Ray this script starts
  (``ray.init(num_cpus=2, include_dashboard=False)``) and shuts down at the end.

Also measured: one trial in this process (``run_metrics``), and a check that the sweep's
best trial has the same metrics as that trial run here. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "scripts")]

from bench_engine import synthetic  # noqa: E402
from ingest_sp500 import ingest_sp500  # noqa: E402

from rustybt_ray.data import Bundle, load_bundle  # noqa: E402
from rustybt_ray.engine import run_metrics  # noqa: E402
from rustybt_ray.errors import BundleNotFoundError  # noqa: E402
from rustybt_ray.examples.top_k_momentum import TopKMomentum  # noqa: E402

CAPITAL = 1_000_000.0
SKIP = 21


def load(bundle: str | None) -> tuple[Bundle, dict[str, Any]]:
    """The bundle to sweep and how it was made (ingest time and size when ingested here)."""
    if bundle is not None:
        return load_bundle(bundle), {"bundle": bundle}
    try:
        root = tempfile.mkdtemp(prefix="rbt-universe-")
        info = ingest_sp500(root=root)
    except BundleNotFoundError as exc:
        return synthetic(500), {"source": f"synthetic 500 x 5000 random walks ({exc})"}
    t0 = time.perf_counter()
    b = load_bundle(info["name"], root=root, cache=False)
    info["load_s"] = round(time.perf_counter() - t0, 3)
    shutil.rmtree(root, ignore_errors=True)  # the bundle is in memory now
    return b, info


def sweep(b: Bundle, top_ks: list[int], lookbacks: list[int], workers: int) -> dict[str, Any]:
    """The grid on ``workers`` actors of a local Ray started here; wall time, throughput and the best trial."""
    from grid_on_ray import timed_grid_sweep

    from rustybt_ray.optimization import CategoricalParameter, ParameterSpace

    space = ParameterSpace(parameters=[CategoricalParameter("top_k", tuple(top_ks)),
                                       CategoricalParameter("lookback", tuple(lookbacks)),
                                       CategoricalParameter("skip", (SKIP,))])
    n_trials = len(top_ks) * len(lookbacks)
    result, startup, wall = timed_grid_sweep(TopKMomentum, b, space, workers, CAPITAL)
    trials = result.trials
    best = result.best
    return {
        "trials": n_trials,
        "complete": result.n_complete,
        "failed": result.n_failed,
        "wall_s": round(wall, 3),
        "trials_per_s": round(n_trials / wall, 3),
        "ray_startup_s": round(startup, 3),
        "best": None if best is None else {
            "params": best["params"],
            "sharpe": best["metrics"]["sharpe"],
            "total_return": best["metrics"]["total_return"],
            "n_transactions": best["metrics"].get("n_transactions"),
        },
        "by_trial": trials.select("top_k", "lookback", "sharpe", "total_return", "duration_s").to_dicts(),
        "errors": [e for e in trials["error"].to_list() if e][:3],
    }


def main() -> None:
    """Ingest (or load), time one trial here, run the sweep, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="a registered bundle to use instead of ingesting the S&P 500 set")
    parser.add_argument("--top-k", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--lookback", type=int, nargs="+", default=[126, 189, 252])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    b, made = load(args.bundle)
    n_bars, n_assets = b.shape
    one = {"top_k": args.top_k[0], "lookback": args.lookback[-1], "skip": SKIP}
    t0 = time.perf_counter()
    here, _ = run_metrics(TopKMomentum, b, capital_base=CAPITAL, params=one)
    one_s = time.perf_counter() - t0
    swept = sweep(b, args.top_k, args.lookback, args.workers)
    check = None
    if swept["best"] is not None:
        best_here, _ = run_metrics(TopKMomentum, b, capital_base=CAPITAL, params=dict(swept["best"]["params"]))
        check = {"best_sharpe_sweep": swept["best"]["sharpe"], "best_sharpe_here": best_here["sharpe"],
                 "equal": best_here["sharpe"] == swept["best"]["sharpe"]}
    out = {
        "benchmark": "bench_universe",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "data": {**made, "assets": n_assets, "bars": n_bars, "block_bytes": b.values.nbytes},
        "one_trial_in_process": {"params": one, "seconds": round(one_s, 3),
                                 "us_per_bar": round(one_s / n_bars * 1e6, 2),
                                 "us_per_bar_per_asset": round(one_s / n_bars / n_assets * 1e6, 4),
                                 "sharpe": here["sharpe"]},
        "sweep": swept,
        "check": check,
    }
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
