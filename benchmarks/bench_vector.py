"""Vectorized sweeps, single process: the 400-trial SMA grid batched vs one at a time, K scaling, µs per bar.

Workload: the 8 mag-7 symbols of ``../shared/data/mag7_daily_yf_2005_2025`` (loaded as
``bench_engine.py`` loads them; the demo bundle when ``../shared`` is absent), full
history, default costs, capital 1,000,000; the grid of ``bench_sweep.py`` (fast 5..50
step 5 x slow 20..215 step 5, 400 combinations, no constraint).

Reported (one run, wall seconds, warm indicator cache unless said):
- the 400 trials in kernel batches of 256 (metrics and returns included), and one at a time;
- per-trial cost against K = 1, 8, 64, 512 (one kernel call of K trials, metrics excluded);
- one trial (fast=10, slow=50), µs per bar: vectorized vs the event loop (``SmaCrossoverCached``
  and ``SmaCrossover`` through ``run_metrics``).

Prints one JSON object. Ray is not used (the 2-worker figures come with the Ray integration).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import load_workload  # noqa: E402
from bench_sweep import CAPITAL, GRID  # noqa: E402

from rustybt_ray.engine import ArrayCache, run_metrics  # noqa: E402
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached, SmaCrossoverVector  # noqa: E402
from rustybt_ray.vector import run_vector, run_vector_batch, simulate_vector  # noqa: E402


def clock(fn, repeats: int = 1) -> float:
    """Median wall seconds of ``repeats`` calls."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    b, source = load_workload()
    n_bars = b.calendar.shape[0]
    cache = ArrayCache()
    cold = clock(lambda: run_vector_batch(SmaCrossoverVector, b, capital_base=CAPITAL, params_list=GRID,
                                          cache=cache, with_returns=True))
    batched = clock(lambda: run_vector_batch(SmaCrossoverVector, b, capital_base=CAPITAL, params_list=GRID,
                                             cache=cache, with_returns=True), 3)
    single = clock(lambda: [run_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params=p, cache=cache,
                                       with_returns=True) for p in GRID])
    per_k = {}
    for K in (1, 8, 64, 512):
        params = [GRID[i % len(GRID)] for i in range(K)]
        s = clock(lambda: simulate_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params_list=params,
                                          cache=cache), 3 if K <= 64 else 1)
        per_k[str(K)] = {"wall_s": round(s, 4), "ms_per_trial": round(1e3 * s / K, 3),
                         "us_per_bar_per_trial": round(1e6 * s / K / n_bars, 3)}
    p = {"fast": 10, "slow": 50}
    vec_one = clock(lambda: run_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params=p, cache=cache), 5)
    ev_cached = clock(lambda: run_metrics(SmaCrossoverCached, b, capital_base=CAPITAL, params=p, cache=cache), 5)
    ev_natural = clock(lambda: run_metrics(SmaCrossover, b, capital_base=CAPITAL, params=p, cache=cache), 3)
    m_vec, _ = run_vector(SmaCrossoverVector, b, capital_base=CAPITAL, params=p, cache=cache)
    m_ev, _ = run_metrics(SmaCrossoverCached, b, capital_base=CAPITAL, params=p, cache=cache)
    print(json.dumps({
        "source": source, "bars": n_bars, "assets": len(b.assets), "trials": len(GRID),
        "grid_400_batched_s": round(batched, 3),
        "grid_400_batched_cold_cache_s": round(cold, 3),
        "grid_400_one_at_a_time_s": round(single, 3),
        "per_trial_vs_K": per_k,
        "one_trial_us_per_bar": {
            "vectorized": round(1e6 * vec_one / n_bars, 2),
            "event_SmaCrossoverCached": round(1e6 * ev_cached / n_bars, 2),
            "event_SmaCrossover": round(1e6 * ev_natural / n_bars, 2),
        },
        "same_final_value": bool(np.isclose(m_vec["final_value"], m_ev["final_value"], rtol=1e-9)),
    }, indent=2))


if __name__ == "__main__":
    main()
