"""``schedule_function(half_days=False)`` on a synthetic 30-minute bundle with one early close, by hand.

Also: ``history(frequency='1d')`` aggregates live in the run's own cache (one test at the end).

Sessions (bars stamped with their open time, every 30 minutes):

==========  =============  ===============================================================
session     bars           notes
==========  =============  ===============================================================
2024-11-25  09:30..15:00   lacks its 15:30 bar: 30 minutes short, not a half day
2024-11-26  09:30..15:30
2024-11-27  09:30..15:30
2024-11-29  09:30..12:30   early close (day after Thanksgiving): 3 hours short, a half day;
                           also November's last session
2024-12-02  09:30..15:30   December's last session in the data
==========  =============  ===============================================================

The usual last bar is 15:30 (3 sessions of 5), so 2024-11-29 is the only half day.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybt_ray.data.frequency import session_index
from rustybt_ray.engine import TradingAlgorithm, date_rules, run_algorithm, time_rules
from rustybt_ray.engine.array_cache import ArrayCache, default_cache
from rustybt_ray.engine.schedule import half_day_sessions
from rustybt_ray.errors import StrategyError

SESSIONS = {"2024-11-25": "15:00", "2024-11-26": "15:30", "2024-11-27": "15:30", "2024-11-29": "12:30",
            "2024-12-02": "15:30"}


@pytest.fixture(scope="module")
def bars(make):
    stamps = [ts for day, last in SESSIONS.items() for ts in pd.date_range(f"{day} 09:30", f"{day} {last}",
                                                                            freq="30min")]
    close = 100 + np.arange(len(stamps), dtype=float)
    return make.bundle(np.array(stamps, dtype="datetime64[ns]"), {"SPY": {"open": close - 0.5, "close": close}},
                       frequency="30m", name="half_days")


@pytest.fixture(scope="module")
def daily(make):
    days = list(SESSIONS)
    close = [100.0, 101.0, 102.0, 103.0, 104.0]
    return make.bundle(days, {"SPY": {"open": close, "close": close}}, name="half_days_daily")


def ran_at(bundle, date_rule, time_rule, half_days) -> list[str]:
    """The bar stamps at which one scheduled function ran."""
    log: list[str] = []

    class Probe(TradingAlgorithm):
        def initialize(self) -> None:
            self.schedule_function(lambda c, d: log.append(f"{c.get_datetime():%Y-%m-%d %H:%M}"),
                                   date_rule, time_rule, half_days=half_days)

    run_algorithm(Probe, bundle)
    return log


def test_the_early_close_is_the_only_half_day(bars):
    session_id = session_index(bars.calendar)[0]
    assert half_day_sessions(bars.calendar, session_id).tolist() == [False, False, False, True, False]


def test_every_day_at_the_open(bars):
    every = ["2024-11-25 09:30", "2024-11-26 09:30", "2024-11-27 09:30", "2024-11-29 09:30", "2024-12-02 09:30"]
    assert ran_at(bars, date_rules.every_day(), time_rules.market_open(), True) == every
    assert ran_at(bars, date_rules.every_day(), time_rules.market_open(), False) == [
        s for s in every if not s.startswith("2024-11-29")]


def test_market_close_offset_on_the_half_day(bars):
    # market_close(minutes=30): the last bar stamped at or before last stamp - 30 min.
    full = ran_at(bars, date_rules.every_day(), time_rules.market_close(minutes=30), True)
    assert full == ["2024-11-25 14:30", "2024-11-26 15:00", "2024-11-27 15:00", "2024-11-29 12:00",
                    "2024-12-02 15:00"]
    assert ran_at(bars, date_rules.every_day(), time_rules.market_close(minutes=30), False) == [
        "2024-11-25 14:30", "2024-11-26 15:00", "2024-11-27 15:00", "2024-12-02 15:00"]


def test_a_month_end_on_a_half_day_is_skipped_not_moved(bars):
    # zipline composes the date rule with "not a half day": November's last session is
    # the half day, so November gets no run (it does not move to 11-27).
    assert ran_at(bars, date_rules.month_end(), time_rules.market_open(), True) == [
        "2024-11-29 09:30", "2024-12-02 09:30"]
    assert ran_at(bars, date_rules.month_end(), time_rules.market_open(), False) == ["2024-12-02 09:30"]


def test_daily_bundles_ignore_half_days(daily):
    # A daily bar says nothing about the session's close: every session runs either way.
    expected = [f"{d} 00:00" for d in SESSIONS]
    assert ran_at(daily, date_rules.every_day(), time_rules.market_open(), True) == expected
    assert ran_at(daily, date_rules.every_day(), time_rules.market_open(), False) == expected


@pytest.mark.parametrize("bad", ["no", 0, None])
def test_half_days_must_be_a_bool(bars, bad):
    with pytest.raises(StrategyError, match="half_days must be True or False"):
        ran_at(bars, date_rules.every_day(), time_rules.market_open(), bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=10, max_value=16), min_size=1, max_size=12),
       st.sampled_from([0, 15, 30, 45]))
def test_half_days_match_a_counter_reference(last_hours, minute):
    """Random session ends, one bar at 09:30 and one at the end: half days by a Counter, independently."""
    stamps = []
    for k, h in enumerate(last_hours):
        day = np.datetime64("2024-01-01") + np.timedelta64(k, "D")
        stamps += [day + np.timedelta64(9 * 60 + 30, "m"), day + np.timedelta64(h * 60 + minute, "m")]
    cal = np.array(stamps, dtype="datetime64[ns]")
    ends = [h * 60 + minute for h in last_hours]
    counts = Counter(ends)
    top = max(counts.values())
    usual = max(e for e, c in counts.items() if c == top)
    expected = [e < usual - 60 for e in ends]
    assert half_day_sessions(cal, session_index(cal)[0]).tolist() == expected


# -- '1d' aggregates of intraday bundles live in the run's cache -------------------------------


def test_daily_history_uses_the_run_cache_not_the_process_wide_one(bars):
    seen: list[float] = []

    class DailyProbe(TradingAlgorithm):
        def handle_data(self, data) -> None:
            seen.append(float(data.history(self.assets[0], "close", 2, "1d", return_type="array")[0]))

    def daily_keys(cache: ArrayCache) -> set:
        return {k for k in cache._data if isinstance(k, tuple) and k[:2] == (bars.version, "daily_bars")}

    first, second = ArrayCache(), ArrayCache()
    run_algorithm(DailyProbe, bars, cache=first)
    one = list(seen)
    seen.clear()
    assert daily_keys(first) and first.misses > 0
    assert not daily_keys(second) and second.misses == 0  # nothing leaked into a cache the run was not given
    run_algorithm(DailyProbe, bars, cache=second)
    assert daily_keys(second) == daily_keys(first)
    assert second.misses == first.misses and second.hits == 0  # its own entries, computed afresh, not shared
    assert not daily_keys(default_cache())
    np.testing.assert_array_equal(seen, one)
    # the day before 11-26's first bar is 11-25, whose last close is bar 11 (09:30..15:00 = 12 bars)
    assert seen[12] == 100.0 + 11
