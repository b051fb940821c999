"""vectorbt's side of ``bench_vector.py``: the same SMA sweeps with ``Portfolio.from_signals``.

vectorbt is not a dependency of this project, so this script runs in an interpreter
of its own (``bench_vector.py`` starts it as ``$VBT_PYTHON bench_vector_vbt.py DATA.npz
MODE``), reads the bars from ``DATA.npz`` (``close``, ``open``: ``(T, N)`` float64, NaN
where an asset has no bar; ``capital``; for ``grid``: ``fast``, ``slow``, one pair per
trial; for ``combs``: ``windows``) and prints one JSON object.

The sweep is written the way vectorbt's own documentation writes it:

- ``grid``: ``MA.run`` once for the fast windows and once for the slow ones (one
  column per trial and asset), ``ma_crossed_above`` / ``ma_crossed_below`` for entries
  and exits;
- ``combs``: ``MA.run_combs(close, window=windows, r=2)``, every pair fast < slow (the
  README's example);

then one ``Portfolio.from_signals`` call for all trials. To trade as the project's
engine does, the signal of bar ``t`` (computed on closes) executes at bar ``t + 1``'s
open: the signals are shifted one bar (``vbt.fshift``) and ``price=open``. Slippage
is 5 bps (``slippage=0.0005``, the project's ``FixedBasisPointsSlippage(5)``). What
differs, because ``from_signals`` has no such option:

- no per-share commission (the project charges 0.001 per share; vectorbt's ``fees``
  are a fraction of the traded value), so ``fees=0``;
- each (trial, asset) column is its own account with ``capital / n_assets`` and goes
  all in on an entry, all out on an exit (``size=inf``); a trial is its columns
  grouped (``group_by`` the window levels, no cash sharing). The project's strategy
  instead rebalances every asset to ``1 / n_assets`` of the whole portfolio at every
  bar, so its trades and equity differ.

Timed (wall seconds, after a warm-up on a small slice that compiles vectorbt's numba
functions in this process): ``signals_s`` (moving averages, crossings, shift),
``portfolio_s`` (``from_signals``), ``metrics_s`` (per trial: total return, Sharpe,
max drawdown, and the per-bar returns), ``wall_s`` their sum (``grid``: the faster of two
runs, ``runs_wall_s`` both; ``combs``: one run). ``peak_rss_mb`` is
this process's peak resident set (``resource.getrusage``), warm-up included.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import numpy as np


def sweep(vbt: Any, pd: Any, close: np.ndarray, opens: np.ndarray, capital: float, mode: str,
          data: Any) -> dict[str, Any]:
    """One timed sweep over ``close`` / ``opens`` (``(T, N)``); timings and a few totals."""
    n_assets = close.shape[1]
    index = pd.date_range("2000-01-03", periods=close.shape[0], freq="D")
    cols = [f"A{i}" for i in range(n_assets)]
    c = pd.DataFrame(close, index=index, columns=cols)
    o = pd.DataFrame(opens, index=index, columns=cols)
    t0 = time.perf_counter()
    if mode == "grid":
        fast = vbt.MA.run(c, window=[int(x) for x in data["fast"]], short_name="fast")
        slow = vbt.MA.run(c, window=[int(x) for x in data["slow"]], short_name="slow")
    else:
        fast, slow = vbt.MA.run_combs(c, window=[int(x) for x in data["windows"]], r=2,
                                      short_names=["fast", "slow"])
    entries = fast.ma_crossed_above(slow).vbt.fshift(1, fill_value=False)
    exits = fast.ma_crossed_below(slow).vbt.fshift(1, fill_value=False)
    t1 = time.perf_counter()
    pf = vbt.Portfolio.from_signals(c, entries, exits, price=o, init_cash=capital / n_assets, size=np.inf,
                                    fees=0.0, slippage=0.0005, group_by=["fast_window", "slow_window"],
                                    cash_sharing=False, freq="1D")
    t2 = time.perf_counter()
    total_return = pf.total_return()
    sharpe = pf.sharpe_ratio()
    drawdown = pf.max_drawdown()
    returns = pf.returns()
    t3 = time.perf_counter()
    return {
        "trials": int(total_return.shape[0]),
        "columns": int(entries.shape[1]),
        "signals_s": t1 - t0,
        "portfolio_s": t2 - t1,
        "metrics_s": t3 - t2,
        "wall_s": t3 - t0,
        "entries": int(entries.values.sum()),
        "orders": int(pf.orders.count().sum()),
        "returns_shape": list(returns.shape),
        "median_total_return": float(np.nanmedian(total_return.values)),
        "median_sharpe": float(np.nanmedian(sharpe.values)),
        "median_max_drawdown": float(np.nanmedian(drawdown.values)),
    }


def main() -> None:
    """``bench_vector_vbt.py DATA.npz grid|combs``: run the sweep, print JSON."""
    if len(sys.argv) != 3 or sys.argv[2] not in ("grid", "combs"):
        sys.exit("usage: bench_vector_vbt.py DATA.npz grid|combs")
    t = time.perf_counter()
    import pandas as pd
    import vectorbt as vbt

    import_s = time.perf_counter() - t
    # Sharpe on daily bars over trading days, as the project's metrics annualize them.
    vbt.settings.returns["year_freq"] = "252 days"
    data = np.load(sys.argv[1])
    close, opens, capital, mode = data["close"], data["open"], float(data["capital"]), sys.argv[2]
    t = time.perf_counter()
    sweep(vbt, pd, close[:300, :2], opens[:300, :2], capital, mode, data)  # compiles numba code (or loads it)
    warmup_s = time.perf_counter() - t
    # The first full-size sweep can still compile (shapes the warm-up did not take); the
    # grid is cheap enough to run again, and the faster run is vectorbt's warm figure.
    runs = [sweep(vbt, pd, close, opens, capital, mode, data) for _ in range(2 if mode == "grid" else 1)]
    out = min(runs, key=lambda r: r["wall_s"])
    out.update({
        "runs_wall_s": [r["wall_s"] for r in runs],
        "mode": mode,
        "vectorbt_version": vbt.__version__,
        "import_s": import_s,
        "warmup_s": warmup_s,
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
