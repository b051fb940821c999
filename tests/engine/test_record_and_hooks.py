"""``record`` keeps a recorded NaN; ``before_trading_start`` runs before the first bar too, seeing no bar after it.

Bundle (daily, 6 bars): AAA open 10..15, close open + 0.5; BBB open 20..25, close open + 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rustybt_ray.engine import (
    NoCommission,
    NoSlippage,
    TradingAlgorithm,
    run_algorithm,
    run_metrics,
)
from rustybt_ray.errors import HistoryError, OrderError

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]
NAN = float("nan")
FREE = {"commission": NoCommission(), "slippage": NoSlippage()}


@pytest.fixture(scope="module")
def bundle(make):
    aaa = np.arange(10.0, 16.0)
    return make.bundle(DATES, {"AAA": {"open": aaa, "close": aaa + 0.5},
                               "BBB": {"open": aaa + 10, "close": aaa + 10.5}})


# -- record -----------------------------------------------------------------------------


def test_record_nan_is_recorded(bundle):
    class Rec(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if t == 1:
                self.record(x=1.0, label="one")
            elif t == 3:
                self.record(x=NAN, label=None)
            elif t == 4:
                self.record(x=4.0)

    x = run_algorithm(Rec, bundle).bars
    got = x["x"].to_list()
    assert math.isnan(got[0]) and got[1:3] == [1.0, 1.0]
    assert math.isnan(got[3])  # recorded NaN: not the previous 1.0
    assert got[4:] == [4.0, 4.0]
    assert x["label"].to_list() == [None, "one", "one", None, None, None]


def test_record_nan_every_bar_then_a_value(bundle):
    class Rec(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            self.record(sig=NAN if t % 2 else float(t))

    got = run_algorithm(Rec, bundle).bars["sig"].to_numpy()
    np.testing.assert_array_equal(got, [0.0, NAN, 2.0, NAN, 4.0, NAN])


def test_record_twice_in_a_bar_keeps_the_last(bundle):
    class Rec(TradingAlgorithm):
        def handle_data(self, data) -> None:
            self.record(v=1.0)
            if data.bar_index == 2:
                self.record(v=NAN)

    got = run_algorithm(Rec, bundle).bars["v"].to_numpy()
    np.testing.assert_array_equal(got, [1.0, 1.0, NAN, 1.0, 1.0, 1.0])


# -- before_trading_start ---------------------------------------------------------------


def hooks(log: list):
    class Hooks(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            a = self.assets[0]
            log.append(("btd", data.bar_index, data.current(a, "close"), data.current(self.assets, "price"),
                        data.current(a, ["open", "close"]), data.can_trade(a), data.can_trade(self.assets),
                        data.history(a, "close", 2, return_type="array"), self.portfolio.portfolio_value))
            self.record(btd=data.current(a, "close"))

        def handle_data(self, data) -> None:
            log.append(("hd", data.bar_index))

    return Hooks


def test_before_trading_start_runs_before_the_first_bar(bundle):
    log: list = []
    res = run_algorithm(hooks(log), bundle, **FREE)
    assert [e[:2] for e in log][:4] == [("btd", -1), ("hd", 0), ("btd", 0), ("hd", 1)]
    assert sum(e[0] == "btd" for e in log) == 6
    # before the calendar's first bar nothing has happened: NaN and False everywhere, in the usual shapes
    _, _, close, prices, fields, one, many, hist, pv = log[0]
    assert math.isnan(close)
    assert prices.shape == (2,) and np.isnan(prices).all()
    assert fields.shape == (2,) and np.isnan(fields).all()
    assert one is False and many.shape == (2,) and not many.any()
    assert hist.shape == (2,) and np.isnan(hist).all()
    assert pv == 100_000.0
    # the next btd sees bar 0
    assert log[2][2] == 10.5 and log[2][7].tolist()[-1] == 10.5
    # recorded from before_trading_start: attributed to the bar about to open
    got = res.bars["btd"].to_numpy()
    np.testing.assert_array_equal(got, [NAN, 10.5, 11.5, 12.5, 13.5, 14.5])


def test_first_bar_hook_runs_in_run_metrics_and_segments(bundle):
    calls: list = []

    class Count(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            calls.append(data.bar_index)

    run_metrics(Count, bundle, checkpoint=lambda step, m: False, checkpoint_every=2)
    assert calls == [-1, 0, 1, 2, 3, 4]  # once per bar, checkpoints included, never twice


def test_first_bar_hook_checks_its_requests(bundle):
    class Bad(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            data.current(self.assets[0], "closing")

    with pytest.raises(HistoryError, match="unknown field"):
        run_algorithm(Bad, bundle)


def test_order_before_the_first_bar_is_refused_clearly(bundle):
    class Early(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            if data.bar_index < 0:
                self.order(self.assets[0], 10)

    with pytest.raises(OrderError, match="no price"):
        run_algorithm(Early, bundle)


def test_first_bar_of_a_later_start_sees_the_warm_up_bar(bundle):
    log: list = []
    run_algorithm(hooks(log), bundle, start=DATES[2], **FREE)
    assert log[0][:3] == ("btd", 1, 11.5)


def test_intraday_start_mid_session_runs_the_hook_first(make):
    stamps = [f"2024-05-06T{h}" for h in ("09:30", "10:30", "11:30", "12:30")]
    stamps += [f"2024-05-07T{h}" for h in ("09:30", "10:30", "11:30", "12:30")]
    close = 100 + np.arange(8.0)
    hourly = make.bundle(stamps, {"AAA": {"open": close - 0.5, "close": close}}, frequency="1h", name="hourly")
    seen: list = []

    class Hook(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            seen.append((data.bar_index, data.current(self.assets[0], "close")))

    run_algorithm(Hook, hourly, start="2024-05-06T11:30", **FREE)
    # the run starts at bar 2 (mid-session): the hook runs before it (seeing bar 1), then at the next session
    assert seen == [(1, 101.0), (3, 103.0)]
