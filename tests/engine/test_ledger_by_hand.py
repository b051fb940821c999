"""A tiny backtest whose every fill, commission, cash and portfolio value was worked out by hand.

Bundle (daily, 6 bars, 2024-01-02 .. 2024-01-09):

    bar        0      1      2      3      4      5
    AAA open  10     11     12     13     14     15
    AAA close 10.5   11.5   12.5   13.5   14.5   15.5
    BBB open  20     21     19     18     20     22
    BBB close 20.5   20     18.5   19     21     22.5
    CCC open  50     51     52     53     --     55      (no bar at 4)
    CCC close 50     51.5   52.5   53.5   --     54

Orders (placed in handle_data at the bar shown):

    bar 0: buy   200 AAA            (open a long)
    bar 1: buy   100 AAA            (add)         sell 300 BBB  (short sale)
    bar 2: sell  120 AAA            (partial sell)
    bar 3: buy   300 BBB            (cover)       buy   10 CCC  (CCC has no bar at 4: fills at 5)
    bar 4: sell  180 AAA            (close the long)
    bar 5: sell   10 BBB            (last bar: never fills, stays open)

Costs: PerShare(cost=0.01, min_trade_cost=1.0), FixedBasisPointsSlippage(10):
buy = ref * 1.001, sell = ref * 0.999, commission = max(1, 0.01 * |shares|).
"""

from __future__ import annotations

import numpy as np
import pytest

from rustybt_ray.engine import FixedBasisPointsSlippage, PerShare, TradingAlgorithm, run_algorithm

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]
NAN = float("nan")
DATA = {
    "AAA": {"open": [10, 11, 12, 13, 14, 15], "close": [10.5, 11.5, 12.5, 13.5, 14.5, 15.5]},
    "BBB": {"open": [20, 21, 19, 18, 20, 22], "close": [20.5, 20, 18.5, 19, 21, 22.5]},
    "CCC": {"open": [50, 51, 52, 53, NAN, 55], "close": [50, 51.5, 52.5, 53.5, NAN, 54]},
}
PLAN = {
    0: [("AAA", 200)],
    1: [("AAA", 100), ("BBB", -300)],
    2: [("AAA", -120)],
    3: [("BBB", 300), ("CCC", 10)],
    4: [("AAA", -180)],
    5: [("BBB", -10)],
}
TOL = 0.005


class Scripted(TradingAlgorithm):
    """Places the orders of PLAN, with costs set in initialize."""

    def initialize(self) -> None:
        self.set_commission(PerShare(cost=0.01, min_trade_cost=1.0))
        self.set_slippage(FixedBasisPointsSlippage(10))

    def handle_data(self, data) -> None:
        for sym, amount in PLAN.get(data.bar_index, []):
            self.order(self.symbol(sym), amount)
        self.record(n_open=sum(len(v) for v in self.get_open_orders().values()))


@pytest.fixture(scope="module")
def bundle(make):
    return make.bundle(DATES, DATA)


def _check(result, exp_tx, exp_cash, exp_pv, exp_pos):
    tx = result.transactions
    assert tx.height == len(exp_tx)
    for row, (bar, sym, amount, price, commission) in zip(tx.iter_rows(named=True), exp_tx, strict=True):
        assert str(row["date"])[:10] == DATES[bar]
        assert row["symbol"] == sym
        assert row["amount"] == amount
        assert abs(row["price"] - price) <= TOL, (row, price)
        assert abs(row["commission"] - commission) <= TOL, (row, commission)
    bars = result.bars
    assert bars.height == 6
    assert [str(d)[:10] for d in bars["date"].to_list()] == DATES
    for t in range(6):
        assert abs(bars["cash"][t] - exp_cash[t]) <= TOL, (t, bars["cash"][t], exp_cash[t])
        assert abs(bars["portfolio_value"][t] - exp_pv[t]) <= TOL, (t, bars["portfolio_value"][t], exp_pv[t])
        assert abs(bars["cash"][t] + bars["positions_value"][t] - bars["portfolio_value"][t]) <= 1e-9
    assert result.positions.shape == (6, 3)
    np.testing.assert_array_equal(result.positions, np.array(exp_pos, dtype=float))
    assert result.final_value == pytest.approx(exp_pv[-1], abs=TOL)


def test_ledger_by_hand_open_fills(bundle):
    result = run_algorithm(Scripted, bundle, capital_base=100_000.0)
    # (bar, symbol, amount, fill price, commission); fills at the open of the bar after the order.
    exp_tx = [
        (1, "AAA", 200.0, 11.011, 2.0),  # 11 * 1.001; max(1, 200 * 0.01) = 2
        (2, "AAA", 100.0, 12.012, 1.0),  # 12 * 1.001; max(1, 1.00) = 1
        (2, "BBB", -300.0, 18.981, 3.0),  # 19 * 0.999; 300 * 0.01 = 3
        (3, "AAA", -120.0, 12.987, 1.2),  # 13 * 0.999; 1.2
        (4, "BBB", 300.0, 20.02, 3.0),  # 20 * 1.001; 3 (cover)
        (5, "CCC", 10.0, 55.055, 1.0),  # placed at 3, no CCC bar at 4 -> 55 * 1.001; max(1, 0.1) = 1
        (5, "AAA", -180.0, 14.985, 1.8),  # 15 * 0.999; 1.8
    ]
    exp_cash = [
        100_000.00,
        97_795.80,  # 100000 - 200 * 11.011 (2202.2) - 2
        102_284.90,  # 97795.8 - 1201.2 - 1 + 300 * 18.981 (5694.3) - 3
        103_842.14,  # 102284.9 + 120 * 12.987 (1558.44) - 1.2
        97_833.14,  # 103842.14 - 300 * 20.02 (6006) - 3
        99_977.09,  # 97833.14 - 550.55 - 1 + 180 * 14.985 (2697.3) - 1.8
    ]
    exp_pv = [
        100_000.00,
        100_095.80,  # 97795.8 + 200 * 11.5
        100_484.90,  # 102284.9 + 300 * 12.5 - 300 * 18.5 = 102284.9 + 3750 - 5550
        100_572.14,  # 103842.14 + 180 * 13.5 - 300 * 19 = + 2430 - 5700
        100_443.14,  # 97833.14 + 180 * 14.5 (2610)
        100_517.09,  # 99977.09 + 10 * 54 (540)
    ]
    exp_pos = [[0, 0, 0], [200, 0, 0], [300, -300, 0], [180, -300, 0], [180, 0, 0], [0, 0, 10]]
    _check(result, exp_tx, exp_cash, exp_pv, exp_pos)
    # gross exposure at bar 2: |3750| + |-5550|
    assert abs(result.bars["gross_exposure"][2] - 9300.0) <= TOL
    # open orders at the end of each bar's handle_data: the CCC order is open at bar 3 and 4;
    # the last BBB order never fills.
    assert result.bars["n_open"].to_list() == [1, 2, 1, 2, 2, 1]
    # returns: first bar against capital, then bar over bar
    r = result.returns
    assert r[0] == pytest.approx(0.0, abs=1e-12)
    assert r[1] == pytest.approx(100_095.80 / 100_000 - 1, abs=1e-9)
    assert r[5] == pytest.approx(100_517.09 / 100_443.14 - 1, abs=1e-9)


def test_ledger_by_hand_open_order_still_open(bundle):
    seen: list = []

    class Spy(Scripted):
        def analyze(self, result) -> None:
            seen.extend(self.get_open_orders(self.symbol("BBB")))

    run_algorithm(Spy, bundle)
    assert len(seen) == 1 and seen[0].amount == -10 and str(seen[0].created)[:10] == DATES[5]


def test_ledger_by_hand_close_fills(bundle):
    result = run_algorithm(Scripted, bundle, capital_base=100_000.0, fill_price="close")
    exp_tx = [
        (1, "AAA", 200.0, 11.5115, 2.0),  # 11.5 * 1.001
        (2, "AAA", 100.0, 12.5125, 1.0),  # 12.5 * 1.001
        (2, "BBB", -300.0, 18.4815, 3.0),  # 18.5 * 0.999
        (3, "AAA", -120.0, 13.4865, 1.2),  # 13.5 * 0.999
        (4, "BBB", 300.0, 21.021, 3.0),  # 21 * 1.001
        (5, "CCC", 10.0, 54.054, 1.0),  # 54 * 1.001
        (5, "AAA", -180.0, 15.4845, 1.8),  # 15.5 * 0.999
    ]
    exp_cash = [
        100_000.00,
        97_695.70,  # 100000 - 2302.3 - 2
        101_984.90,  # 97695.7 - 1251.25 - 1 + 300 * 18.4815 (5544.45) - 3
        103_602.08,  # 101984.9 + 120 * 13.4865 (1618.38) - 1.2
        97_292.78,  # 103602.08 - 300 * 21.021 (6306.3) - 3
        99_536.65,  # 97292.78 - 540.54 - 1 + 180 * 15.4845 (2787.21) - 1.8
    ]
    exp_pv = [
        100_000.00,
        99_995.70,  # 97695.7 + 200 * 11.5
        100_184.90,  # 101984.9 + 3750 - 5550
        100_332.08,  # 103602.08 + 2430 - 5700
        99_902.78,  # 97292.78 + 2610
        100_076.65,  # 99536.65 + 540
    ]
    exp_pos = [[0, 0, 0], [200, 0, 0], [300, -300, 0], [180, -300, 0], [180, 0, 0], [0, 0, 10]]
    _check(result, exp_tx, exp_cash, exp_pv, exp_pos)


def test_run_level_cost_models_and_precedence(bundle):
    """Costs passed to run_algorithm apply; set_commission/set_slippage in initialize override them."""

    class NoCostSet(Scripted):
        def initialize(self) -> None:
            pass

    result = run_algorithm(NoCostSet, bundle, commission=PerShare(cost=0.01, min_trade_cost=1.0),
                           slippage=FixedBasisPointsSlippage(10))
    assert abs(result.bars["portfolio_value"][5] - 100_517.09) <= TOL
    # The run's models are overridden by the strategy's own set_commission/set_slippage.
    from rustybt_ray.engine import NoCommission, NoSlippage

    result = run_algorithm(Scripted, bundle, commission=NoCommission(), slippage=NoSlippage())
    assert abs(result.bars["portfolio_value"][5] - 100_517.09) <= TOL
    # Defaults: PerShare(0.001), 5 bps. First fill: 200 AAA at 11 * 1.0005 = 11.0055, commission 0.2.
    result = run_algorithm(NoCostSet, bundle)
    row = result.transactions.row(0, named=True)
    assert abs(row["price"] - 11.0055) <= 1e-9 and abs(row["commission"] - 0.2) <= 1e-12
    assert abs(result.bars["cash"][1] - (100_000 - 200 * 11.0055 - 0.2)) <= 1e-6


def test_per_dollar_and_basis_points_commission(bundle):
    from rustybt_ray.engine import BasisPoints, NoSlippage, PerDollar

    class NoCostSet(Scripted):
        def initialize(self) -> None:
            pass

    # PerDollar(0.002): 200 * 11 * 0.002 = 4.4 on the first fill; BasisPoints(20) is the same rate.
    for model in (PerDollar(0.002), BasisPoints(20)):
        result = run_algorithm(NoCostSet, bundle, commission=model, slippage=NoSlippage())
        row = result.transactions.row(0, named=True)
        assert row["price"] == 11.0
        assert abs(row["commission"] - 4.4) <= 1e-9
        # the short sale at bar 2: 300 * 19 * 0.002 = 11.4 (commission is always positive)
        row = result.transactions.row(2, named=True)
        assert row["amount"] == -300 and abs(row["commission"] - 11.4) <= 1e-9
