"""The strategy-facing API: parameters, schedule_function, before_trading_start, orders, record."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rustybt_ray.engine import NoCommission, NoSlippage, TradingAlgorithm, date_rules, run_algorithm, time_rules
from rustybt_ray.errors import OrderError, StrategyError

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10"]
NAN = float("nan")
FREE = {"commission": NoCommission(), "slippage": NoSlippage()}


@pytest.fixture(scope="module")
def bundle(make):
    # BBB has no bar at 2 and 3; CCC starts at bar 2.
    return make.bundle(DATES, {
        "AAA": {"open": [10, 11, 12, 13, 14, 15, 16], "close": [10, 11, 12, 13, 14, 15, 16]},
        "BBB": {"open": [20, 20, NAN, NAN, 24, 25, 26], "close": [20, 20, NAN, NAN, 24, 25, 26]},
        "CCC": {"open": [NAN, NAN, 30, 31, 32, 33, 34], "close": [NAN, NAN, 30, 31, 32, 33, 34]},
    })


# -- parameters -----------------------------------------------------------------------


class Lookback(TradingAlgorithm):
    lookback = 10

    def initialize(self) -> None:
        self.lookback = 20  # only a default: a run's value wins
        self.window = 4  # a parameter that exists only through initialize

    def handle_data(self, data) -> None:
        w = data.history(self.assets[0], "close", self.lookback, return_type="array")
        self.record(lookback=self.lookback, seen=len(w), window=self.window)


def test_run_params_win_over_initialize_assignment(bundle):
    res = run_algorithm(Lookback, bundle, params={"lookback": 5})
    assert res.bars["lookback"].to_list() == [5] * 7
    assert res.bars["seen"].to_list() == [5] * 7  # history really got 5 bars
    assert res.params["lookback"] == 5
    # without params, the initialize assignment is the default
    res = run_algorithm(Lookback, bundle)
    assert res.bars["lookback"].to_list() == [20] * 7 and res.bars["seen"].to_list() == [20] * 7
    # a name assigned only in initialize can be pinned too
    res = run_algorithm(Lookback, bundle, params={"window": 9})
    assert res.bars["window"].to_list() == [9] * 7
    assert res.params["window"] == 9


def test_unknown_param_names_the_parameter(bundle):
    with pytest.raises(StrategyError, match="lookbak"):
        run_algorithm(Lookback, bundle, params={"lookbak": 5})
    with pytest.raises(StrategyError, match="order"):
        run_algorithm(Lookback, bundle, params={"order": 1})  # would hide the API


# -- schedule_function ------------------------------------------------------------------


def _expected(sessions: pd.DatetimeIndex, kind: str, offset: int) -> set:
    """Dates a rule picks, computed independently with pandas groupby."""
    df = pd.DataFrame({"d": sessions})
    if kind.startswith("week"):
        iso = sessions.isocalendar()
        keys = [iso.year.to_numpy(), iso.week.to_numpy()]
    else:
        keys = [sessions.year, sessions.month]
    out = set()
    for _, g in df.groupby(keys):
        days = sorted(g["d"])
        i = offset if kind.endswith("start") else len(days) - 1 - offset
        if 0 <= i < len(days):
            out.add(days[i])
    return out


def test_schedule_function_dates(demo_bundle):
    b = demo_bundle.slice("2019-11-01", "2021-02-26")
    start, end = "2019-12-04", "2021-01-29"  # a Wednesday; the run uses the calendar's weeks and months
    calls: dict[str, list] = {"ws": [], "me": [], "ms": [], "we": [], "order": []}

    class Sched(TradingAlgorithm):
        def initialize(self) -> None:
            self.schedule_function(self.week_start, date_rules.week_start(days_offset=1), time_rules.market_open())
            self.schedule_function(month_end, date_rules.month_end(days_offset=1), time_rules.market_close())
            self.schedule_function(lambda ctx, data: calls["ms"].append(ctx.get_datetime()),
                                   date_rules.month_start())
            self.schedule_function(lambda data: calls["we"].append(self.get_datetime()), date_rules.week_end())

        def week_start(self, data) -> None:
            calls["ws"].append(self.get_datetime())
            calls["order"].append(("ws", data.bar_index))

        def handle_data(self, data) -> None:
            calls["order"].append(("hd", data.bar_index))

    def month_end(context, data) -> None:
        assert isinstance(context, Sched)
        calls["me"].append(context.get_datetime())

    run_algorithm(Sched, b, start=start, end=end)
    cal = pd.DatetimeIndex(b.calendar)
    in_run = lambda s: {d for d in s if pd.Timestamp(start) <= d <= pd.Timestamp(end)}  # noqa: E731
    for key, kind, off in [("ws", "week_start", 1), ("me", "month_end", 1), ("ms", "month_start", 0),
                           ("we", "week_end", 0)]:
        expected = in_run(_expected(cal, kind, off))
        assert set(calls[key]) == expected, key
        assert len(calls[key]) == len(expected)
    # a week with a holiday Monday starts on Tuesday: offset 1 is then Wednesday (2020-01-22)
    assert pd.Timestamp("2020-01-22") in set(calls["ws"])
    # the week of 2019-12-02 started before the run: its second session (Dec 3) is not in the run
    assert min(calls["ws"]) == pd.Timestamp("2019-12-10")
    # scheduled functions run before handle_data on the same bar
    order = calls["order"]
    for i, (what, t) in enumerate(order):
        if what == "ws":
            assert order[i + 1] == ("hd", t)


def test_schedule_function_outside_initialize_and_bad_signature(bundle):
    class Late(TradingAlgorithm):
        def handle_data(self, data) -> None:
            self.schedule_function(lambda c, d: None)

    with pytest.raises(StrategyError):
        run_algorithm(Late, bundle)

    class Bad(TradingAlgorithm):
        def initialize(self) -> None:
            self.schedule_function(lambda a, b, c: None)

    with pytest.raises(StrategyError):
        run_algorithm(Bad, bundle)


# -- before_trading_start ---------------------------------------------------------------


def test_before_trading_start_sees_previous_bar(bundle):
    seen: list = []

    class Btd(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            seen.append((data.bar_index, data.current(self.assets[0], "close"),
                         data.history(self.assets[0], "close", 2, return_type="array").tolist()))
            self.record(btd_close=data.current(self.assets[0], "close"))

        def handle_data(self, data) -> None:
            seen.append(("hd", data.bar_index))

    res = run_algorithm(Btd, bundle, start=DATES[2])
    # btd of bar t sees bar t-1 (the first run bar included: its warm-up bar), then handle_data sees t
    assert seen[0] == (1, 11.0, [10.0, 11.0])
    assert seen[1] == ("hd", 2)
    assert seen[2] == (2, 12.0, [11.0, 12.0])
    # recorded from before_trading_start: attributed to the bar about to open
    assert res.bars["btd_close"].to_list() == [11.0, 12.0, 13.0, 14.0, 15.0]


def test_order_in_before_trading_start_fills_at_that_bar(bundle):
    class Btd(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            if data.bar_index == 2:  # before bar 3 opens
                self.order(self.assets[0], 10)

    res = run_algorithm(Btd, bundle, **FREE)
    row = res.transactions.row(0, named=True)
    assert str(row["date"])[:10] == DATES[3] and row["price"] == 13.0


# -- orders -----------------------------------------------------------------------------


def test_open_order_without_bar_stays_open_then_fills(bundle):
    log: list = []

    class Wait(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            bbb = self.symbol("BBB")
            if t == 1:
                self.oid = self.order(bbb, 7)
            opens = self.get_open_orders(bbb)
            log.append((t, [(o.id, o.amount) for o in opens], self.portfolio.positions[bbb].amount,
                        getattr(self.get_order(getattr(self, "oid", -1)), "status", None)))

    res = run_algorithm(Wait, bundle, **FREE)
    # placed at 1; BBB has no bar at 2 and 3; fills at 4's open (24)
    assert [x[1] for x in log] == [[], [(1, 7)], [(1, 7)], [(1, 7)], [], [], []]
    assert [x[2] for x in log] == [0, 0, 0, 0, 7, 7, 7]
    # zipline's get_order: the order stays known after it fills
    assert [x[3] for x in log] == [None, "open", "open", "open", "filled", "filled", "filled"]
    assert res.transactions.height == 1
    row = res.transactions.row(0, named=True)
    assert str(row["date"])[:10] == DATES[4] and row["price"] == 24.0 and row["order_id"] == 1


def test_cancel_order(bundle):
    class Cancel(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if t == 1:
                self.a = self.order(self.symbol("BBB"), 7)  # stays open over bars 2, 3
                b = self.order(self.symbol("AAA"), 5)
                self.cancel_order(b)  # cancelled in the bar it was placed: never fills
            if t == 3:
                (order,) = self.get_open_orders(self.symbol("BBB"))
                self.cancel_order(order)
                with pytest.raises(OrderError):
                    self.cancel_order(order.id)  # no longer open
            self.record(n=len(self.get_open_orders()))

    res = run_algorithm(Cancel, bundle, **FREE)
    assert res.transactions.height == 0
    assert res.bars["n"].to_list() == [0, 1, 1, 0, 0, 0, 0]
    assert (res.positions == 0).all()


def test_order_target_counts_open_orders(bundle):
    ids: list = []

    class Target(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            bbb = self.symbol("BBB")
            if t == 1:
                ids.append(self.order_target(bbb, 10))  # +10, open until bar 4
            if t == 2:
                ids.append(self.order_target(bbb, 10))  # already on the way: nothing
                ids.append(self.order_target(bbb, 15))  # +5 more
            if t == 3:
                # 15 on the way at price 20 (BBB's last close), PV 100000: 0.0045 * 100000 / 20 = 22.5 -> 22
                ids.append(self.order_target_percent(bbb, 0.0045))  # +7
                ids.append(self.order_target_value(bbb, 22 * 20.0))  # already 22: nothing

    res = run_algorithm(Target, bundle, **FREE)
    assert ids[0] is not None and ids[1] is None and ids[2] is not None and ids[3] is not None and ids[4] is None
    assert res.transactions["amount"].to_list() == [10.0, 5.0, 7.0]
    assert res.positions[-1].tolist() == [0.0, 22.0, 0.0]


def test_order_target_percent_sizing_by_hand(bundle):
    class Weights(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if t == 0:
                self.order_target_percent(self.symbol("AAA"), 0.5)  # 0.5 * 100000 / 10 = 5000
                self.order_target_percent(self.symbol("BBB"), -0.25)  # -0.25 * 100000 / 20 = -1250
            if t == 4:
                # PV_4 = cash + 5000 * 14 - 1250 * 24; cash = 100000 - 5000 * 11 + 1250 * 20 = 70000
                # PV_4 = 70000 + 70000 - 30000 = 110000; AAA target 0.3 * 110000 / 14 = 2357.142857;
                # the rule applies to the difference: 2357.142857 - 5000 = -2642.857 -> -2642 (toward zero)
                self.order_target_percent(self.symbol("AAA"), 0.3)  # -2642
                self.order_target_percent(self.symbol("BBB"), 0)  # +1250
            self.record(pv=self.portfolio.portfolio_value)

    res = run_algorithm(Weights, bundle, **FREE)
    # BBB's order from bar 0 fills at bar 1 (open 20); AAA at 11
    assert res.transactions.select("symbol", "amount", "price").rows() == [
        ("AAA", 5000.0, 11.0), ("BBB", -1250.0, 20.0), ("AAA", -2642.0, 15.0), ("BBB", 1250.0, 25.0)]
    assert res.bars["pv"][4] == pytest.approx(110_000.0, abs=1e-9)
    assert res.positions[-1].tolist() == [2358.0, 0.0, 0.0]


def test_share_rounding_rule(bundle):
    class Rounding(TradingAlgorithm):
        def handle_data(self, data) -> None:
            if data.bar_index == 0:
                a = self.assets[0]
                self.order(a, 9.99995)  # within 1e-4 of 10: 10
                self.order(a, 9.9)  # truncated: 9
                self.order(a, -9.9)  # toward zero: -9
                self.order(a, -2.00003)  # -2
                assert self.order(a, 0.4) is None  # 0 shares: no order
                self.order_value(a, 99.9999)  # 9.99999 shares -> 10

    res = run_algorithm(Rounding, bundle, **FREE)
    assert res.transactions["amount"].to_list() == [10.0, 9.0, -9.0, -2.0, 10.0]


def test_order_without_price_raises(bundle):
    errors: list = []

    class NoPrice(TradingAlgorithm):
        def handle_data(self, data) -> None:
            if data.bar_index != 1:
                return
            ccc = self.symbol("CCC")  # first bar is 2
            for call in (lambda: self.order_target_percent(ccc, 0.1), lambda: self.order_value(ccc, 1000),
                         lambda: self.order_percent(ccc, 0.1), lambda: self.order_target_value(ccc, 500),
                         lambda: self.order(ccc, 10), lambda: self.order_target(ccc, 10)):
                with pytest.raises(OrderError, match="CCC"):
                    call()
                errors.append(1)
            assert self.order_target_percent(ccc, 0) is None  # zero needs no price
            assert self.order_target(ccc, 0) is None
            assert not self.get_open_orders()

    res = run_algorithm(NoPrice, bundle)
    assert len(errors) == 6 and res.transactions.height == 0


def test_non_finite_targets_raise(bundle):
    checked: list = []

    class Bad(TradingAlgorithm):
        def handle_data(self, data) -> None:
            a = self.assets[0]
            for call in (lambda: self.order_target_percent(a, NAN), lambda: self.order_target_percent(a, math.inf),
                         lambda: self.order_target(a, NAN), lambda: self.order(a, NAN),
                         lambda: self.order_value(a, math.inf), lambda: self.order_percent(a, NAN),
                         lambda: self.order_target_value(a, NAN), lambda: self.order(a, "ten")):
                with pytest.raises(OrderError):
                    call()
                checked.append(1)
            assert not self.get_open_orders()

    res = run_algorithm(Bad, bundle, end=DATES[0])
    assert len(checked) == 8 and res.transactions.height == 0


@pytest.mark.parametrize("start", [None, DATES[3]])
def test_order_in_initialize_raises_whatever_the_start(bundle, start):
    class Early(TradingAlgorithm):
        def initialize(self) -> None:
            self.order(self.assets[0], 10)

    with pytest.raises(OrderError, match="initialize"):
        run_algorithm(Early, bundle, start=start)

    class EarlyPct(TradingAlgorithm):
        def initialize(self) -> None:
            self.order_target_percent(self.assets[0], 0.5)

    with pytest.raises(OrderError):
        run_algorithm(EarlyPct, bundle, start=start)


def test_limit_price_and_style_together_are_rejected(bundle):
    # limit and stop orders are supported (tests/engine/test_order_types.py); zipline refuses both ways at once
    from rustybt_ray.engine import LimitOrder

    class Limit(TradingAlgorithm):
        def handle_data(self, data) -> None:
            self.order(self.assets[0], 1, limit_price=9.0, style=LimitOrder(9.0))

    with pytest.raises(OrderError, match="not both"):
        run_algorithm(Limit, bundle)


# -- record and portfolio ----------------------------------------------------------------


def test_record_carries_forward(bundle):
    class Rec(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if t in (1, 4):
                self.record(x=t * 10.0, label=f"bar{t}")
            if t == 0:
                self.record(y=-1.0)

    res = run_algorithm(Rec, bundle)
    x = res.bars["x"].to_list()
    assert np.isnan(x[0]) and x[1:] == [10.0, 10.0, 10.0, 40.0, 40.0, 40.0]
    assert res.bars["y"].to_list() == [-1.0] * 7
    assert res.bars["label"].to_list() == [None, "bar1", "bar1", "bar1", "bar4", "bar4", "bar4"]


def test_portfolio_during_the_run(bundle):
    snaps: list = []

    class Pf(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if t == 0:
                self.order(self.symbol("BBB"), 100)
                self.order(self.symbol("AAA"), -50)
            pf = self.portfolio
            bbb, aaa = self.symbol("BBB"), self.symbol("AAA")
            snaps.append((pf.cash, pf.portfolio_value, pf.positions[bbb].amount, pf.positions[aaa].amount,
                          pf.positions[aaa].cost_basis))

    run_algorithm(Pf, bundle, **FREE)
    # fills at bar 1: BBB +100 @ 20, AAA -50 @ 11; cash 100000 - 2000 + 550 = 98550
    assert snaps[0] == (100_000.0, 100_000.0, 0.0, 0.0, 0.0)
    assert snaps[1][0] == pytest.approx(98_550.0) and snaps[1][2:] == (100.0, -50.0, 11.0)
    # bar 3: BBB has no bar, marked at its last close 20; AAA at 13: 98550 + 2000 - 650
    assert snaps[3][1] == pytest.approx(99_900.0)
