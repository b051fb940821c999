"""Intraday sweep: a grid of ``IntradayBreakout`` trials on real SPY minute bars, on 2 local Ray workers.

Workload:
- Data: ``../shared/data/spy_minute_ninjatrader_2011/SPY.csv`` (SPY 1-minute bars, Jan and
  Mar 2011, NinjaTrader export; see its README). The regular session (09:30..15:59 ET,
  bar-open stamps) is kept by default; ``--all-hours`` keeps the pre- and post-market bars.
  The CSV is written as long-format Parquet and ingested with ``ingest_bundle`` into a
  registry under a temporary ``RUSTYBT_BUNDLE_ROOT``, then loaded with ``load_bundle``.
- Strategy: :class:`rustybt_ray.examples.intraday_breakout.IntradayBreakout`, which reads
  prior sessions with ``data.history(..., frequency="1d")`` at ``time_rules.market_open(minutes=...)``
  and goes flat at ``time_rules.market_close(minutes=15)``.
- Grid: lookback 1..5 x entry_minutes {5, 15, 30, 60} = 20 trials, objective Sharpe,
  default costs, ``ParallelOptimizer`` with a 2-actor ``WorkerPool`` on
  ``ray.init(num_cpus=2, include_dashboard=False)`` (started here, shut down at the end).

Also measured: one trial run in this process (cold, i.e. building the daily aggregates, and
warm), and a check that the sweep's best trial matches the same trial run in this process.

Prints one JSON object and writes it to ``benchmarks/results/bench_intraday.json``.
The data directory exists only on the project's benchmark machine; without it the
script stops with a message (the tests never need it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spy_minute_ninjatrader_2011"
RESULTS = Path(__file__).resolve().parent / "results" / "bench_intraday.json"
LOOKBACKS = (1, 2, 3, 4, 5)
ENTRY_MINUTES = (5, 15, 30, 60)
CAPITAL = 100_000.0


def ingest(root: str, all_hours: bool) -> str:
    """Write SPY.csv as long Parquet and ingest it as bundle ``spy_minute`` under ``root``; returns the name."""
    import polars as pl

    from rustybt_ray.data import ingest_bundle

    frame = pl.read_csv(SHARED / "SPY.csv", try_parse_dates=True)
    if not all_hours:
        minute = pl.col("date").dt.hour().cast(pl.Int32) * 60 + pl.col("date").dt.minute().cast(pl.Int32)
        frame = frame.filter((minute >= 9 * 60 + 30) & (minute <= 15 * 60 + 59))
    source = Path(root) / "spy_long.parquet"
    frame.with_columns(pl.lit("SPY").alias("symbol")).write_parquet(source)
    ingest_bundle("spy_minute", source, frequency="1m", root=Path(root) / "bundles")
    return "spy_minute"


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-hours", action="store_true", help="keep pre- and post-market bars")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    if not (SHARED / "SPY.csv").is_file():
        sys.exit(f"bench_intraday: {SHARED / 'SPY.csv'} is not here; this benchmark needs the project's shared data")

    from grid_on_ray import timed_grid_sweep

    from rustybt_ray.data import load_bundle
    from rustybt_ray.engine import run_metrics
    from rustybt_ray.examples.intraday_breakout import IntradayBreakout
    from rustybt_ray.optimization import (
        CategoricalParameter,
        ParameterSpace,
    )

    with tempfile.TemporaryDirectory(prefix="bench_intraday_") as root:
        os.environ["RUSTYBT_BUNDLE_ROOT"] = str(Path(root) / "bundles")
        t0 = time.perf_counter()
        name = ingest(root, args.all_hours)
        ingest_s = time.perf_counter() - t0
        bundle = load_bundle(name)
        bars = int(bundle.shape[0])
        sessions = len(set(bundle.sessions.tolist()))

        # In-process reference: the first call also builds the daily aggregates (cold).
        probe = {"lookback": 3, "entry_minutes": 30}
        t1 = time.perf_counter()
        run_metrics(IntradayBreakout, bundle, capital_base=CAPITAL, params=probe)
        cold_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        run_metrics(IntradayBreakout, bundle, capital_base=CAPITAL, params=probe)
        warm_s = time.perf_counter() - t1

        space = ParameterSpace(parameters=[CategoricalParameter("lookback", LOOKBACKS),
                                           CategoricalParameter("entry_minutes", ENTRY_MINUTES)])
        n_trials = len(LOOKBACKS) * len(ENTRY_MINUTES)
        result, startup_s, wall_s = timed_grid_sweep(IntradayBreakout, name, space, 2, CAPITAL)

        best = result.best
        assert best is not None, "no trial finished with a finite Sharpe ratio"
        again, _ = run_metrics(IntradayBreakout, bundle, capital_base=CAPITAL, params=best["params"])
        out = {
            "benchmark": "bench_intraday",
            "data": str(SHARED),
            "regular_session_only": not args.all_hours,
            "bundle": {"frequency": bundle.frequency, "bars": bars, "sessions": sessions,
                       "first_bar": str(bundle.calendar[0]), "last_bar": str(bundle.calendar[-1])},
            "ingest_s": ingest_s,
            "workers": 2,
            "trials": n_trials,
            "n_complete": result.n_complete,
            "n_failed": result.n_failed,
            "ray_startup_s": startup_s,
            "wall_s": wall_s,
            "trials_per_s": n_trials / wall_s,
            "us_per_bar_per_trial": wall_s / (n_trials * bars) * 1e6,
            "us_per_bar_per_trial_per_worker": 2 * wall_s / (n_trials * bars) * 1e6,
            "in_process_trial_cold_s": cold_s,
            "in_process_trial_warm_s": warm_s,
            "in_process_us_per_bar": warm_s / bars * 1e6,
            "best_params": best["params"],
            "best_sharpe": best["metrics"]["sharpe"],
            "best_final_value": best["metrics"]["final_value"],
            "best_matches_in_process_run": again["final_value"] == best["metrics"]["final_value"],
            "top5": result.top(5).select("lookback", "entry_minutes", "sharpe", "final_value", "n_trades")
            .to_dicts(),
        }
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
