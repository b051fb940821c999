"""get_order reports an order open, filled or cancelled (zipline's blotter keeps every order).

Bundle (daily, 5 bars), AAA: open = close, high = open + 0.5, low = open - 0.5:

    bar     0     1     2     3     4
    open    10    10    11    12    12
    volume  1000  1000  800   2000  1000

Under zipline's ``VolumeShareSlippage`` a buy of 60 at bar 0 fills 25 / 20 / 15 at bars 1-3
(see ``test_volume_slippage.py``); the log below is taken in ``handle_data``, after the bar's fills.
"""

from __future__ import annotations

import numpy as np
import pytest

from rustybt_ray.engine import LimitOrder, NoCommission, NoSlippage, TradingAlgorithm, VolumeShareSlippage, run_algorithm

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
OPEN = [10.0, 10.0, 11.0, 12.0, 12.0]
VOLUME = [1000.0, 1000.0, 800.0, 2000.0, 1000.0]
ZIPLINE = VolumeShareSlippage(volume_limit=0.025, price_impact=0.1)


@pytest.fixture(scope="module")
def bundle(make):
    return make.bundle(DATES, {"AAA": {"open": OPEN, "close": OPEN, "high": [p + 0.5 for p in OPEN],
                                       "low": [p - 0.5 for p in OPEN], "volume": VOLUME}})


def tracker(log: list, cancel_at: int | None = None, **order_kwargs):
    """Orders 60 AAA at bar 0, cancels it at ``cancel_at``; logs get_order's view of it every bar."""

    class Tracker(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if t == 0:
                self.oid = self.order(self.symbol("AAA"), 60, **order_kwargs)
            if t == cancel_at:
                self.cancel_order(self.oid)
            o = self.get_order(self.oid)
            log.append((o.status, o.amount, o.filled, o.open_amount, str(o.created)[:10], o.limit, int(o.asset)))

    return Tracker


def test_an_order_filled_over_three_bars_is_then_reported_filled(bundle):
    log: list = []
    run_algorithm(tracker(log), bundle, commission=NoCommission(), slippage=ZIPLINE)
    placed = DATES[0]
    assert log == [("open", 60.0, 0.0, 60.0, placed, None, 0), ("open", 60.0, 25.0, 35.0, placed, None, 0),
                   ("open", 60.0, 45.0, 15.0, placed, None, 0), ("filled", 60.0, 60.0, 0.0, placed, None, 0),
                   ("filled", 60.0, 60.0, 0.0, placed, None, 0)]


def test_a_cancelled_order_keeps_what_it_filled(bundle):
    log: list = []
    res = run_algorithm(tracker(log, cancel_at=2), bundle, commission=NoCommission(), slippage=ZIPLINE)
    assert [x[:4] for x in log] == [("open", 60.0, 0.0, 60.0), ("open", 60.0, 25.0, 35.0),
                                    ("cancelled", 60.0, 45.0, 15.0), ("cancelled", 60.0, 45.0, 15.0),
                                    ("cancelled", 60.0, 45.0, 15.0)]
    np.testing.assert_array_equal(res.positions[:, 0], [0, 25, 45, 45, 45])


def test_a_filled_limit_order_keeps_its_limit(bundle):
    # limit 10.5 at bar 0: bar 1's low 9.5 reaches it, fills at min(open 10, 10.5) = 10
    log: list = []
    res = run_algorithm(tracker(log, style=LimitOrder(10.5)), bundle, commission=NoCommission(),
                        slippage=NoSlippage())
    assert log[0] == ("open", 60.0, 0.0, 60.0, DATES[0], 10.5, 0)
    assert log[1:] == [("filled", 60.0, 60.0, 0.0, DATES[0], 10.5, 0)] * 4
    assert res.transactions["price"].to_list() == [10.0]


def test_a_cancelled_limit_order_that_never_filled(bundle):
    log: list = []
    res = run_algorithm(tracker(log, cancel_at=1, style=LimitOrder(5.0)), bundle, commission=NoCommission(),
                        slippage=NoSlippage())
    assert log[1:] == [("cancelled", 60.0, 0.0, 60.0, DATES[0], 5.0, 0)] * 4
    assert res.transactions.height == 0


def test_ids_never_placed_are_none(bundle):
    seen: list = []

    class Ask(TradingAlgorithm):
        def handle_data(self, data) -> None:
            if data.bar_index == 0:
                oid = self.order(self.symbol("AAA"), 5)
                seen.extend([self.get_order(0), self.get_order(oid + 1), self.get_order(-3), self.get_order("1")])
            if data.bar_index == 1:
                seen.append(self.get_order(1).status)

    run_algorithm(Ask, bundle, commission=NoCommission(), slippage=NoSlippage())
    assert seen == [None, None, None, None, "filled"]
