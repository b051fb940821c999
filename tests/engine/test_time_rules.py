"""``schedule_function`` time and date rules on minute, hourly and daily bundles, checked by hand.

Minute sessions (bars stamped with their open time):

==========  =============  ==============================================
session     bars           notes
==========  =============  ==============================================
2024-06-27  09:30..15:59   Thursday, first session of the data
2024-06-28  09:30..15:59   no 10:00 bar
2024-07-01  09:31..15:59   opens a minute late
2024-07-02  09:30..15:59   no 15:44 bar
2024-07-03  09:30..12:59   early close
2024-07-05  09:30..15:59   (07-04 is a holiday)
==========  =============  ==============================================
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from rustybt_ray.engine import NoCommission, NoSlippage, TradingAlgorithm, date_rules, run_algorithm, time_rules
from rustybt_ray.errors import StrategyError

MINUTE_SESSIONS = {
    "2024-06-27": ("09:30", "15:59"), "2024-06-28": ("09:30", "15:59"), "2024-07-01": ("09:31", "15:59"),
    "2024-07-02": ("09:30", "15:59"), "2024-07-03": ("09:30", "12:59"), "2024-07-05": ("09:30", "15:59"),
}
HOLES = {"2024-06-28 10:00", "2024-07-02 15:44"}
DAYS = list(MINUTE_SESSIONS)


def _minute_stamps() -> list[pd.Timestamp]:
    out = []
    for day, (first, last) in MINUTE_SESSIONS.items():
        for ts in pd.date_range(f"{day} {first}", f"{day} {last}", freq="1min"):
            if ts.strftime("%Y-%m-%d %H:%M") not in HOLES:
                out.append(ts)
    return out


@pytest.fixture(scope="module")
def minute(make):
    stamps = _minute_stamps()
    close = 100 + 0.01 * np.arange(len(stamps))
    return make.bundle(np.array(stamps, dtype="datetime64[ns]"), {"SPY": {"open": close - 0.005, "close": close}},
                       frequency="1m", name="minute_rules")


@pytest.fixture(scope="module")
def hourly(make):
    days = {"2024-06-27": 7, "2024-06-28": 7, "2024-07-03": 4}  # 07-03: 09:30..12:30
    stamps = [pd.Timestamp(f"{d} 09:30") + pd.Timedelta(hours=h) for d, n in days.items() for h in range(n)]
    close = 100 + np.arange(len(stamps), dtype=float)
    return make.bundle(np.array(stamps, dtype="datetime64[ns]"), {"SPY": {"open": close - 0.5, "close": close}},
                       frequency="1h", name="hourly_rules")


def scheduled_times(bundle, rules: dict[str, tuple]) -> dict[str, list[str]]:
    """Run a strategy that schedules one recorder per ``(date_rule, time_rule)``; the bar stamps each ran at."""
    log: dict[str, list[str]] = {name: [] for name in rules}

    class Rules(TradingAlgorithm):
        def initialize(self) -> None:
            for name, (date_rule, time_rule) in rules.items():
                self.schedule_function(lambda c, d, *, _n=name: log[_n].append(f"{c.get_datetime():%Y-%m-%d %H:%M}"),
                                       date_rule, time_rule)

    run_algorithm(Rules, bundle)
    return log


def at(clock: str, days=DAYS, skip: dict[str, str] | None = None) -> list[str]:
    """``"<day> <clock>"`` for each day, with per-day exceptions (``None`` drops the day)."""
    skip = skip or {}
    return [f"{d} {skip.get(d, clock)}" for d in days if skip.get(d, clock) is not None]


def test_minute_time_rules(minute):
    every = date_rules.every_day()
    got = scheduled_times(minute, {
        "open": (every, time_rules.market_open()),
        "open30": (every, time_rules.market_open(minutes=30)),
        "open1h15": (every, time_rules.market_open(hours=1, minutes=15)),
        "open4h": (every, time_rules.market_open(hours=4)),
        "close": (every, time_rules.market_close()),
        "close15": (every, time_rules.market_close(minutes=15)),
        "close4h": (every, time_rules.market_close(hours=4)),
        "offset": (every, time_rules.market_open(offset=dt.timedelta(minutes=30))),
    })
    # the open is the session's first bar; a missing target bar moves to the next (open) or previous (close) one
    assert got["open"] == at("09:30", skip={"2024-07-01": "09:31"})
    assert got["open30"] == at("10:00", skip={"2024-06-28": "10:01", "2024-07-01": "10:01"})
    assert got["open1h15"] == at("10:45", skip={"2024-07-01": "10:46"})
    assert got["open4h"] == at("13:30", skip={"2024-07-01": "13:31", "2024-07-03": None})  # early close: no 13:30
    assert got["close"] == at("15:59", skip={"2024-07-03": "12:59"})
    assert got["close15"] == at("15:44", skip={"2024-07-02": "15:43", "2024-07-03": "12:44"})
    assert got["close4h"] == at("11:59", skip={"2024-07-03": None})  # 12:59 - 4h is before the open
    assert got["offset"] == got["open30"]


def test_minute_date_rules_with_time_rules(minute):
    open30 = time_rules.market_open(minutes=30)
    close15 = time_rules.market_close(minutes=15)
    got = scheduled_times(minute, {
        "week_start": (date_rules.week_start(), open30),
        "week_start1": (date_rules.week_start(days_offset=1), open30),
        "week_end": (date_rules.week_end(), close15),
        "month_start": (date_rules.month_start(), open30),
        "month_end": (date_rules.month_end(), close15),
        "month_end1": (date_rules.month_end(days_offset=1), close15),
    })
    # Weeks and months start at their first session in the data (06-27 is the data's first).
    assert got["week_start"] == ["2024-06-27 10:00", "2024-07-01 10:01"]
    assert got["week_start1"] == ["2024-06-28 10:01", "2024-07-02 10:00"]
    assert got["week_end"] == ["2024-06-28 15:44", "2024-07-05 15:44"]
    assert got["month_start"] == ["2024-06-27 10:00", "2024-07-01 10:01"]
    assert got["month_end"] == ["2024-06-28 15:44", "2024-07-05 15:44"]
    assert got["month_end1"] == ["2024-06-27 15:44", "2024-07-03 12:44"]


def test_every_minute_and_once_per_session(minute):
    got = scheduled_times(minute, {"all": (date_rules.every_day(), time_rules.every_minute()),
                                   "mondays": (date_rules.week_start(), time_rules.every_minute())})
    assert len(got["all"]) == minute.shape[0] == 4 * 390 - 2 + 389 + 210
    assert len(got["mondays"]) == 390 + 389  # 06-27 and 07-01, every bar


def test_hourly_time_rules(hourly):
    every = date_rules.every_day()
    got = scheduled_times(hourly, {
        "open30": (every, time_rules.market_open(minutes=30)),
        "open2h": (every, time_rules.market_open(hours=2)),
        "close15": (every, time_rules.market_close(minutes=15)),
        "close": (every, time_rules.market_close()),
        "close3h": (every, time_rules.market_close(hours=3)),
    })
    days = ["2024-06-27", "2024-06-28", "2024-07-03"]
    assert got["open30"] == at("10:30", days)  # no bar at 10:00: the next one
    assert got["open2h"] == at("11:30", days)
    assert got["close15"] == at("14:30", days, {"2024-07-03": "11:30"})  # the 15:30 bar ends after close - 15
    assert got["close"] == at("15:30", days, {"2024-07-03": "12:30"})
    assert got["close3h"] == at("12:30", days, {"2024-07-03": "09:30"})


def test_daily_bundle_ignores_time_rules(make):
    dates = ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02", "2024-02-05"]
    daily = make.bundle(dates, {"AAA": {"open": [1.0] * 5, "close": [1.0] * 5}})
    got = scheduled_times(daily, {
        "close15": (date_rules.every_day(), time_rules.market_close(minutes=15)),
        "month_start": (date_rules.month_start(), time_rules.market_open(hours=2)),
        "week_end": (date_rules.week_end(), time_rules.every_minute()),
    })
    assert got["close15"] == [f"{d} 00:00" for d in dates]
    assert got["month_start"] == ["2024-01-30 00:00", "2024-02-01 00:00"]
    assert got["week_end"] == ["2024-02-02 00:00", "2024-02-05 00:00"]


def test_scheduled_order_fills_at_next_bar(minute):
    """A function scheduled 30 minutes after the open runs before handle_data; its order fills at the next bar."""
    seen: list[tuple[str, str]] = []

    class Buy(TradingAlgorithm):
        def initialize(self) -> None:
            self.schedule_function(self.buy, date_rules.every_day(), time_rules.market_open(minutes=30))
            self.schedule_function(self.sell, date_rules.every_day(), time_rules.market_close(minutes=15))

        def buy(self, data) -> None:
            seen.append(("buy", f"{self.get_datetime():%H:%M}"))
            self.order(self.asset, 10)

        def sell(self, data) -> None:
            self.order_target(self.asset, 0)

        def handle_data(self, data) -> None:
            if seen and seen[-1][0] == "buy" and seen[-1][1] == f"{self.get_datetime():%H:%M}":
                seen.append(("handle_data", seen[-1][1]))

    res = run_algorithm(Buy, minute, commission=NoCommission(), slippage=NoSlippage())
    assert seen[:2] == [("buy", "10:00"), ("handle_data", "10:00")]
    tx = res.transactions
    first = tx.row(0, named=True)
    t = int(np.searchsorted(minute.calendar, np.datetime64("2024-06-27T10:01", "ns")))
    assert first["date"] == pd.Timestamp("2024-06-27 10:01") and first["amount"] == 10
    assert first["price"] == minute.open[t, 0]
    sells = tx.filter(tx["amount"] < 0)
    # 07-02 sells at 15:43 (no 15:44 bar) and fills at the next bar, 15:45; 07-03 closes early
    assert sells["date"].dt.strftime("%Y-%m-%d %H:%M").to_list() == at("15:45", skip={"2024-07-03": "12:45"})


@pytest.mark.parametrize("make_rule, match", [
    (lambda: time_rules.market_open(minutes=-1), "minutes must be an int >= 0"),
    (lambda: time_rules.market_close(hours=1.5), "hours must be an int >= 0"),
    (lambda: time_rules.market_open(minutes=True), "minutes must be an int"),
    (lambda: time_rules.market_open(minutes=5, offset=dt.timedelta(minutes=5)), "not both"),
    (lambda: time_rules.market_close(offset=dt.timedelta(seconds=30)), "whole number of minutes"),
    (lambda: time_rules.market_open(offset="30m"), "must be a timedelta"),
    (lambda: date_rules.week_start(days_offset=-1), "days_offset"),
])
def test_bad_rules_raise(make_rule, match):
    with pytest.raises(StrategyError, match=match):
        make_rule()


def test_timedelta_offsets_equal_minutes():
    assert time_rules.market_open(offset=pd.Timedelta(minutes=90)) == time_rules.market_open(hours=1, minutes=30)
    assert time_rules.market_close(offset=dt.timedelta(hours=2)) == time_rules.market_close(minutes=120)
