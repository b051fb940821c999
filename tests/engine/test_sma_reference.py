"""``SmaCrossover`` on the demo bundle against an independent NumPy re-implementation of its rules.

The reference below uses only the bundle's raw arrays (open, close) and a plain loop over bars;
it does not call any engine code. It implements the engine's documented contract:

* at bar t the strategy sees closes up to and including t (NaN-padded before the first bar);
  asset i gets weight 1/N if mean(last ``fast`` closes) > mean(last ``slow`` closes), else 0;
* target shares = w * PV_t / price_t, PV_t = cash + sum(pos * price_t), price = close
  forward-filled; amount = round rule(target - position - open orders), where the round rule
  snaps to the nearest integer within 1e-4 and otherwise truncates toward zero;
* orders fill at the next bar where the asset has a bar, at its open, with slippage
  ref * (1 +- bps / 10_000) and commission |amount| * cost per share; orders stay open otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rustybt_ray.engine import NoCommission, NoSlippage, run_algorithm
from rustybt_ray.examples.sma_crossover import SmaCrossover

CAPITAL = 100_000.0


def _ffill(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    for t in range(1, out.shape[0]):
        row = out[t]
        missing = np.isnan(row)
        row[missing] = out[t - 1][missing]
    return out


def _round_rule(x: float) -> float:
    r = round(x)
    return float(r) if abs(x - r) < 1e-4 else float(math.trunc(x))


def reference_sma(open_: np.ndarray, close: np.ndarray, fast: int, slow: int, per_share: float, bps: float):
    """Returns (portfolio value per bar, cash per bar, number of fills)."""
    T, N = close.shape
    price = _ffill(close)
    cash = CAPITAL
    pos = [0.0] * N
    book: list[tuple[int, float]] = []  # open orders (asset, amount) in placement order
    n_fills = 0
    pv_out = np.empty(T)
    cash_out = np.empty(T)
    padded = np.vstack([np.full((slow - 1, N), np.nan), close])
    weight = 1.0 / N
    for t in range(T):
        # 1. fills of orders placed earlier, at this bar's open
        still_open = []
        for a, q in book:
            ref = open_[t, a]
            if np.isnan(ref):
                still_open.append((a, q))
                continue
            fill = ref * (1.0 + (bps / 10_000.0 if q > 0 else -bps / 10_000.0))
            pos[a] += q
            cash -= q * fill + abs(q) * per_share
            n_fills += 1
        book = still_open
        # 2. the strategy's decision at the close of bar t
        window = padded[t:t + slow]  # closes t-slow+1 .. t
        fast_ma = window[-fast:].mean(axis=0)
        slow_ma = window.mean(axis=0)
        prow = price[t].tolist()
        pv = cash + sum(q * p for q, p in zip(pos, prow) if q)
        pending = list(pos)
        for a, q in book:
            pending[a] += q
        for a in range(N):
            if fast_ma[a] > slow_ma[a]:
                target = weight * pv / prow[a]
            else:
                target = 0.0
            amount = _round_rule(target - pending[a])
            if amount != 0:
                book.append((a, amount))
                pending[a] += amount
        # 3. end-of-bar valuation at forward-filled closes
        cash_out[t] = cash
        pv_out[t] = cash + sum(q * p for q, p in zip(pos, prow) if q)
    return pv_out, cash_out, n_fills


@pytest.mark.parametrize("fast,slow", [(10, 50), (5, 20), (20, 100)])
@pytest.mark.parametrize("costs", ["default", "zero"])
def test_sma_crossover_matches_reference(demo_bundle, fast, slow, costs):
    b = demo_bundle
    assert b.frequency == "1d" and len(b.assets) == 8
    if costs == "default":
        result = run_algorithm(SmaCrossover, b, capital_base=CAPITAL, params={"fast": fast, "slow": slow})
        per_share, bps = 0.001, 5.0
    else:
        result = run_algorithm(SmaCrossover, b, capital_base=CAPITAL, params={"fast": fast, "slow": slow},
                               commission=NoCommission(), slippage=NoSlippage())
        per_share, bps = 0.0, 0.0
    assert result.params["fast"] == fast and result.params["slow"] == slow
    pv_ref, cash_ref, n_ref = reference_sma(np.array(b.open), np.array(b.close), fast, slow, per_share, bps)

    pv = result.bars["portfolio_value"].to_numpy()
    assert pv.shape == pv_ref.shape
    np.testing.assert_allclose(pv, pv_ref, rtol=1e-9, atol=0)
    np.testing.assert_allclose(result.bars["cash"].to_numpy(), cash_ref, rtol=1e-9, atol=1e-6)
    assert result.transactions.height == n_ref
    assert result.final_value == pytest.approx(pv_ref[-1], rel=1e-9)
    assert result.metrics["final_value"] == pytest.approx(pv_ref[-1], rel=1e-9)
    # the strategy really traded (a reference that never trades would match trivially)
    assert n_ref > 100
    assert abs(pv_ref[-1] / CAPITAL - 1) > 0.5


def test_sma_dataframe_variant_matches_array_variant(demo_bundle):
    from rustybt_ray.examples.sma_crossover import SmaCrossoverDataFrame

    b = demo_bundle.slice("2012-01-01", "2015-12-31")
    a = run_algorithm(SmaCrossover, b, params={"fast": 5, "slow": 20})
    d = run_algorithm(SmaCrossoverDataFrame, b, params={"fast": 5, "slow": 20})
    np.testing.assert_array_equal(a.bars["portfolio_value"].to_numpy(), d.bars["portfolio_value"].to_numpy())
    assert a.transactions.equals(d.transactions)
