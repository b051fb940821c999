"""Walk-forward window arithmetic (pure, no Ray): hand-checked cases, properties, config errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rustybt_ray.data import load_bundle
from rustybt_ray.errors import ConfigError
from rustybt_ray.optimize.windows import WindowConfig, make_windows

CAL = load_bundle("demo").calendar
DAY = np.timedelta64(1, "D")


def _days(cal: np.ndarray, span) -> list[str]:
    return [str(d)[:10] for d in cal[span.start:span.stop]]


def test_rolling_days_hand_checked():
    # January 2018: the 1st and the 15th (MLK day) are holidays, weekends have no bars.
    ws = make_windows(CAL, WindowConfig(10, 5, 5, unit="days"), "2018-01-01", "2018-01-31")
    assert len(ws) == 3  # a 4th test segment would be Jan 31 .. Feb 4, past the end
    w0, w1, w2 = ws
    assert _days(CAL, w0.train) == ["2018-01-02", "2018-01-03", "2018-01-04", "2018-01-05", "2018-01-08",
                                    "2018-01-09", "2018-01-10"]  # [Jan 1, Jan 11)
    assert _days(CAL, w0.validation) == ["2018-01-11", "2018-01-12"]  # [Jan 11, Jan 16)
    assert _days(CAL, w0.test) == ["2018-01-16", "2018-01-17", "2018-01-18", "2018-01-19"]  # [Jan 16, Jan 21)
    assert _days(CAL, w1.train) == ["2018-01-08", "2018-01-09", "2018-01-10", "2018-01-11", "2018-01-12"]
    assert _days(CAL, w1.validation) == _days(CAL, w0.test)
    assert _days(CAL, w1.test) == ["2018-01-22", "2018-01-23", "2018-01-24", "2018-01-25"]
    assert _days(CAL, w2.test) == ["2018-01-26", "2018-01-29", "2018-01-30"]  # [Jan 26, Jan 31)
    # Half-open index ranges into the calendar, with the first and last bar's timestamps.
    assert w0.train.start == int(np.searchsorted(CAL, np.datetime64("2018-01-02")))
    assert w0.train.stop == w0.validation.start and w0.validation.stop == w0.test.start
    assert w0.train.first == np.datetime64("2018-01-02") and w0.train.last == np.datetime64("2018-01-10")
    assert len(w0.train) == 7 and list(w0.train.bars) == list(range(w0.train.start, w0.train.stop))
    assert [w.index for w in ws] == [0, 1, 2]


def test_anchored_bars_hand_checked():
    i0 = int(np.searchsorted(CAL, np.datetime64("2018-01-02")))  # first bar of 2018
    cfg = WindowConfig(5, 2, 3, window_type="anchored", unit="bars", purge_days=1)
    ws = make_windows(CAL, cfg, "2018-01-01", "2018-01-31")  # 21 bars: one window needs 5+1+2+1+3 = 12
    assert len(ws) == 4
    for k, w in enumerate(ws):
        assert (w.train.start, w.train.stop) == (i0, i0 + 5 + 3 * k)
        assert (w.validation.start, w.validation.stop) == (i0 + 6 + 3 * k, i0 + 8 + 3 * k)
        assert (w.test.start, w.test.stop) == (i0 + 9 + 3 * k, i0 + 12 + 3 * k)
    assert ws[-1].test.stop == i0 + 21 and ws[-1].test.last == np.datetime64("2018-01-31")


def test_no_validation_and_step_larger_than_test():
    cfg = WindowConfig(20, 0, 5, step_size_days=10, unit="bars", purge_days=2)
    ws = make_windows(CAL, cfg, "2018-01-01", "2018-06-30")
    assert all(w.validation is None for w in ws)
    assert list(ws[0].segments()) == ["train", "test"]
    for w in ws:
        assert w.test.start - w.train.stop == 2  # one purge gap, train -> test
    assert [b.test.start - a.test.start for a, b in zip(ws, ws[1:])] == [10] * (len(ws) - 1)


def test_guide_config_on_the_demo_calendar_in_calendar_days():
    cfg = WindowConfig(train_period_days=252, validation_period_days=63, test_period_days=63,
                       step_size_days=63, window_type="rolling", unit="days")
    ws = make_windows(CAL, cfg, "2018-01-01", "2023-12-31")
    # (2191 days - 378) // 63 + 1 windows of 378 calendar days each.
    assert len(ws) == 29
    assert ws[0].train.first == np.datetime64("2018-01-02") and ws[0].train.last == np.datetime64("2018-09-07")
    assert ws[0].test.first == np.datetime64("2018-11-12")


def test_guide_config_counts_trading_sessions_by_default():
    """The guide's ``train_period_days=252  # 1 year training``: 252 trading days, not calendar days."""
    cfg = WindowConfig(train_period_days=252, validation_period_days=63, test_period_days=63,
                       step_size_days=63, window_type="rolling")
    assert cfg.unit == "sessions"
    ws = make_windows(CAL, cfg, "2018-01-01", "2023-12-31")
    days = CAL[(CAL >= np.datetime64("2018-01-01")) & (CAL < np.datetime64("2024-01-01"))]
    assert len(ws) == (len(days) - 378) // 63 + 1
    for k, w in enumerate(ws):
        assert (len(w.train), len(w.validation), len(w.test)) == (252, 63, 63)  # daily: a session is a bar
        assert w.train.first == days[63 * k] and w.test.last == days[63 * k + 377]
    assert ws[0].train.last == np.datetime64("2019-01-02")  # 2018 had 251 sessions


def test_sessions_on_an_intraday_calendar_hold_whole_sessions():
    # Three bars a day on weekdays, a half day (one bar) every tenth session.
    bars, n = [], 0
    for d in np.arange(np.datetime64("2021-01-04"), np.datetime64("2021-06-30")):
        if d.astype("datetime64[D]").item().weekday() >= 5:
            continue
        hours = (10,) if n % 10 == 9 else (10, 12, 14)
        bars += [np.datetime64(d) + np.timedelta64(h, "h") for h in hours]
        n += 1
    cal = np.array(bars, dtype="datetime64[ns]")
    ws = make_windows(cal, WindowConfig(20, 5, 5), None, None)
    sessions = np.unique(cal.astype("datetime64[D]"))
    assert len(ws) == (len(sessions) - 30) // 5 + 1
    for k, w in enumerate(ws):
        for span, (a, b) in zip((w.train, w.validation, w.test), ((0, 20), (20, 25), (25, 30))):
            got = np.unique(cal[span.start:span.stop].astype("datetime64[D]"))
            assert list(got) == list(sessions[5 * k + a: 5 * k + b])  # whole sessions, in order
            assert span.start == 0 or cal[span.start - 1].astype("datetime64[D]") != got[0]


def test_no_window_fits_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"no walk-forward window fits .* needs 378 days .* has 180 days"):
        make_windows(CAL, WindowConfig(252, 63, 63, unit="days"), "2018-01-01", "2018-06-29")
    with pytest.raises(ConfigError, match="needs 30 bars"):
        make_windows(CAL, WindowConfig(10, 10, 10, unit="bars"), "2018-01-01", "2018-01-31")


def test_a_segment_without_bars_is_an_error():
    # One-day validation segments: the first one, Saturday 2018-01-06, holds no bar.
    with pytest.raises(ConfigError, match=r"window 0: the validation segment \[2018-01-06, 2018-01-07\) holds no bar"):
        make_windows(CAL, WindowConfig(5, 1, 3, unit="days"), "2018-01-01", "2018-03-31")


@pytest.mark.parametrize("kwargs, field", [
    (dict(train_period_days=0, validation_period_days=5, test_period_days=5), "train_period_days"),
    (dict(train_period_days=10, validation_period_days=-1, test_period_days=5), "validation_period_days"),
    (dict(train_period_days=10, validation_period_days=5, test_period_days=0), "test_period_days"),
    (dict(train_period_days=10.5, validation_period_days=5, test_period_days=5), "train_period_days"),
    (dict(train_period_days=True, validation_period_days=5, test_period_days=5), "train_period_days"),
    (dict(train_period_days=10, validation_period_days=5, test_period_days=5, step_size_days=4), "step_size_days"),
    (dict(train_period_days=10, validation_period_days=5, test_period_days=5, step_size_days=0), "step_size_days"),
    (dict(train_period_days=10, validation_period_days=5, test_period_days=5, purge_days=-1), "purge_days"),
    (dict(train_period_days=10, validation_period_days=5, test_period_days=5, window_type="expanding"),
     "window_type"),
    (dict(train_period_days=10, validation_period_days=5, test_period_days=5, unit="weeks"), "unit"),
])
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=rf"WindowConfig\.{field}"):
        WindowConfig(**kwargs)


def test_defaults_and_frozen():
    cfg = WindowConfig(252, 63, 21)
    assert cfg.step_size_days == 21 and cfg.step == 21  # the step defaults to the test length
    assert cfg.window_type == "rolling" and cfg.unit == "sessions" and cfg.purge_days == 0
    assert cfg.span == 252 + 63 + 21
    with pytest.raises(AttributeError):
        cfg.train_period_days = 5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="WindowConfig"):
        make_windows(CAL, {"train_period_days": 5}, None, None)  # type: ignore[arg-type]


@st.composite
def configs(draw):
    unit = draw(st.sampled_from(["days", "bars"]))
    test = draw(st.integers(1, 60))
    return WindowConfig(
        train_period_days=draw(st.integers(1, 300)),
        validation_period_days=draw(st.sampled_from([0, draw(st.integers(1, 60))])),
        test_period_days=test,
        step_size_days=draw(st.integers(test, test + 40)),
        window_type=draw(st.sampled_from(["rolling", "anchored"])),
        unit=unit,
        purge_days=draw(st.sampled_from([0, draw(st.integers(1, 10))])),
    )


@settings(max_examples=300, deadline=None)
@given(cfg=configs(), start=st.integers(0, len(CAL) - 800), length=st.integers(100, 1500),
       start_shift=st.integers(0, 3))
def test_window_properties(cfg, start, length, start_shift):
    lo = (CAL[start].astype("datetime64[D]") - start_shift * DAY)  # may be a non-trading day
    hi = lo + length * DAY
    i_lo = int(np.searchsorted(CAL, lo))
    i_hi = int(np.searchsorted(CAL, hi + DAY))  # the end date is inclusive
    try:
        ws = make_windows(CAL, cfg, str(lo), str(hi))
    except ConfigError as exc:
        if "holds no bar" in str(exc):
            assume(False)  # a segment of a few calendar days over a weekend or holiday
        assert "no walk-forward window fits" in str(exc)
        if cfg.unit == "bars":
            assert i_lo + cfg.span > i_hi
        else:
            assert cfg.span > length + 1
        return
    day = DAY if cfg.unit == "days" else 1
    origin = lo if cfg.unit == "days" else i_lo
    tests_pre = cfg.train_period_days + cfg.validation_period_days + cfg.purge_days * (
        2 if cfg.validation_period_days else 1)
    for k, w in enumerate(ws):
        assert w.index == k
        segs = list(w.segments().values())
        assert (w.validation is None) == (cfg.validation_period_days == 0)
        for s in segs:
            assert 0 <= s.start < s.stop <= len(CAL)
            assert s.first == CAL[s.start] and s.last == CAL[s.stop - 1]
            assert i_lo <= s.start and s.stop <= i_hi  # inside [start, end]
        for a, b in zip(segs, segs[1:]):
            # Ordered, never overlapping, and separated by the purge gap.
            assert a.stop <= b.start
            if cfg.unit == "bars":
                assert b.start - a.stop == cfg.purge_days
            else:
                assert b.first - a.last > cfg.purge_days * DAY
                if cfg.purge_days == 0:
                    assert b.start == a.stop
        # Each segment is exactly the bars of its spec interval.
        t_lo = origin + (0 if cfg.window_type == "anchored" else k * cfg.step) * day
        expect = {"train": (t_lo, origin + (cfg.train_period_days + k * cfg.step) * day)}
        test_lo = origin + (tests_pre + k * cfg.step) * day
        expect["test"] = (test_lo, test_lo + cfg.test_period_days * day)
        if w.validation is not None:
            v_lo = origin + (cfg.train_period_days + cfg.purge_days + k * cfg.step) * day
            expect["validation"] = (v_lo, v_lo + cfg.validation_period_days * day)
        for name, (a, b) in expect.items():
            s = w.segments()[name]
            if cfg.unit == "bars":
                assert (s.start, s.stop) == (a, b)
            else:
                inside = np.flatnonzero((CAL >= a) & (CAL < b))
                assert (s.start, s.stop) == (int(inside[0]), int(inside[-1]) + 1)
        if cfg.window_type == "anchored":
            assert w.train.start == i_lo  # anchored trains all start at the first bar
    for a, b in zip(ws, ws[1:]):
        # Test segments advance by the step and never overlap each other.
        assert a.test.stop <= b.test.start
        if cfg.unit == "bars":
            assert b.test.start - a.test.start == cfg.step
    # Every window that fits is made: one more would end past the end.
    next_end = origin + (tests_pre + cfg.test_period_days + len(ws) * cfg.step) * day
    assert next_end > (i_hi if cfg.unit == "bars" else hi + DAY)
