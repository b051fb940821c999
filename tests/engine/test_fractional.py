"""Fractional shares (``run_algorithm(..., fractional_shares=True)``), checked by hand against whole shares.

Bundle (daily, 4 bars), AAA: open = close = 7, 8, 9, 10. Capital 1,000, no costs. Orders:

    bar 0: order_target_percent(AAA, 0.5): 500 / 7 = 71.428571428...   -> fills at bar 1's open (8)
    bar 1: order_value(AAA, 100): 100 / 8 = 12.5                          -> fills at bar 2's open (9)
           order(AAA, 0.25)                                               -> fills at bar 2's open (9)
    bar 2: order_target(AAA, 0): everything                               -> fills at bar 3's open (10)

Fractional (to a millionth of a share, truncated): 71.428571, 12.5, 0.25, then -84.178571.
    cash: 1000 - 71.428571 * 8 = 428.571432; - 12.75 * 9 = 313.821432; + 84.178571 * 10 = 1155.607142
Whole shares: 71, 12, (0.25 -> no order), then -83.
    cash: 1000 - 568 = 432; - 108 = 324; + 830 = 1154
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rustybt_ray.engine import (
    NoCommission,
    NoSlippage,
    TradingAlgorithm,
    run_algorithm,
    run_metrics,
)
from rustybt_ray.engine.shares import (
    round_fractional,
    round_fractional_array,
    round_shares,
    share_rounder,
)
from rustybt_ray.errors import StrategyError

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
PRICES = [7.0, 8.0, 9.0, 10.0]
FREE = {"commission": NoCommission(), "slippage": NoSlippage(), "capital_base": 1000.0}


@pytest.fixture(scope="module")
def bundle(make):
    return make.bundle(DATES, {"AAA": {"open": PRICES, "close": PRICES}})


def script(batch: bool = False, seen: list | None = None):
    class Script(TradingAlgorithm):
        def handle_data(self, data) -> None:
            a = self.symbol("AAA")
            t = data.bar_index
            if t == 0:
                if batch:
                    self.order_target_percents(np.array([0.5]))
                else:
                    self.order_target_percent(a, 0.5)
            elif t == 1:
                self.order_value(a, 100)
                self.order(a, 0.25)
            elif t == 2:
                self.order_target(a, 0)
            if seen is not None:
                seen.append(self.portfolio.positions[a].amount)

    return Script


def test_fractional_by_hand(bundle):
    seen: list = []
    res = run_algorithm(script(seen=seen), bundle, fractional_shares=True, **FREE)
    assert res.transactions["amount"].to_list() == [71.428571, 12.5, 0.25, -84.178571]
    assert res.transactions["price"].to_list() == [8.0, 9.0, 9.0, 10.0]
    cash = res.bars["cash"].to_numpy()
    np.testing.assert_allclose(cash, [1000, 428.571432, 313.821432, 1155.607142], rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.bars["portfolio_value"].to_numpy(),
                               [1000, 428.571432 + 71.428571 * 8, 313.821432 + 84.178571 * 9, 1155.607142],
                               rtol=0, atol=1e-9)
    assert seen == [0.0, 71.428571, 84.178571, 0.0]  # flat again exactly, on the grid
    np.testing.assert_array_equal(res.positions[:, 0], [0.0, 71.428571, 84.178571, 0.0])
    assert res.metrics["final_value"] == pytest.approx(1155.607142, abs=1e-9)
    metrics, _ = run_metrics(script(), bundle, fractional_shares=True, **FREE)
    assert metrics.keys() == res.metrics.keys()
    assert all(np.isclose(metrics[k], res.metrics[k], rtol=0, atol=0, equal_nan=True) for k in metrics)


def test_whole_shares_stay_the_default(bundle):
    res = run_algorithm(script(), bundle, **FREE)
    assert res.transactions["amount"].to_list() == [71.0, 12.0, -83.0]
    np.testing.assert_allclose(res.bars["cash"].to_numpy(), [1000, 432, 324, 1154], rtol=0, atol=1e-12)


def test_batch_rebalance_honours_fractional_shares(bundle):
    one = run_algorithm(script(), bundle, fractional_shares=True, **FREE)
    batch = run_algorithm(script(batch=True), bundle, fractional_shares=True, **FREE)
    assert batch.transactions.equals(one.transactions)


def test_fractional_with_default_costs(bundle):
    # the default costs, 5 bps slippage and 0.001 per share: buy 71.428571 @ 8 * 1.0005
    res = run_algorithm(script(), bundle, capital_base=1000.0, fractional_shares=True)
    row = res.transactions.row(0, named=True)
    assert row["amount"] == 71.428571
    assert row["price"] == pytest.approx(8 * 1.0005) and row["commission"] == pytest.approx(0.071428571)
    assert res.bars["cash"][1] == pytest.approx(1000 - 71.428571 * 8 * 1.0005 - 0.071428571, abs=1e-9)


def test_fractional_shares_must_be_a_bool(bundle):
    with pytest.raises(StrategyError, match="fractional_shares"):
        run_algorithm(script(), bundle, fractional_shares="yes", **FREE)


def test_round_fractional_cases():
    assert round_fractional(0.1234567) == 0.123456
    assert round_fractional(-0.1234567) == -0.123456
    assert round_fractional(0.29999999999) == 0.3  # float error snaps, as the whole-share rule does
    assert round_fractional(1e-7) == 0.0
    assert share_rounder(True) is round_fractional and share_rounder(False) is round_shares
    with pytest.raises(ValueError):
        round_fractional(float("nan"))


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=30))
def test_round_fractional_array_equals_scalar(xs):
    arr = round_fractional_array(np.array(xs))
    assert arr.tolist() == [round_fractional(x) for x in xs]
    # on the grid, and never further from zero than the amount asked (up to the snap)
    assert np.all(np.abs(arr) <= np.abs(xs) * (1 + 1e-15) + 1e-9)
