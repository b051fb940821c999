"""``history(..., frequency='1d')`` on intraday bundles: daily bars without look-ahead.

The bundle is a real one: a long frame written to Parquet, ingested with
``ingest_bundle`` and loaded with ``load_bundle``. The reference is an independent
polars aggregation of the rows stamped at or before the current bar, grouped by
(symbol, day). A hypothesis property checks that rewriting any bar after ``t``
never changes what ``history`` returns at ``t``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rustybt_ray.data import ingest_bundle, load_bundle
from rustybt_ray.data.bundle import FIELDS, Bundle
from rustybt_ray.engine import NoCommission, NoSlippage, TradingAlgorithm, run_algorithm
from rustybt_ray.engine.bar_data import BarData
from rustybt_ray.errors import HistoryError

#: (day, first minute after 09:30, number of bars) of AAA; 03-06 is a short session.
SESSIONS = [("2024-03-04", 0, 20), ("2024-03-05", 0, 20), ("2024-03-06", 0, 8), ("2024-03-07", 0, 20)]
K = 3  # bar_count of the daily windows checked


def _long_frame() -> pl.DataFrame:
    """AAA trades every minute; BBB skips minutes, misses 03-05 entirely and opens late on 03-07."""
    rng = np.random.default_rng(7)
    rows: dict[str, list] = {k: [] for k in ("date", "symbol", "open", "high", "low", "close", "volume")}
    for sym in ("AAA", "BBB"):
        price = 100.0 if sym == "AAA" else 50.0
        for day, first, n in SESSIONS:
            for m in range(first, first + n):
                if sym == "BBB" and (day == "2024-03-05" or (day == "2024-03-07" and m < 5) or rng.random() < 0.3):
                    continue
                o = price + rng.normal(0, 0.2)
                c = o + rng.normal(0, 0.3)
                rows["date"].append(pd.Timestamp(f"{day} 09:30") + pd.Timedelta(minutes=m))
                rows["symbol"].append(sym)
                rows["open"].append(round(o, 2))
                rows["high"].append(round(max(o, c) + rng.uniform(0, 0.2), 2))
                rows["low"].append(round(min(o, c) - rng.uniform(0, 0.2), 2))
                rows["close"].append(round(c, 2))
                rows["volume"].append(float(rng.integers(100, 5000)))
                price = c
    return pl.DataFrame(rows).with_columns(pl.col("date").cast(pl.Datetime("ns")))


@pytest.fixture(scope="module")
def minute(tmp_path_factory) -> tuple[Bundle, pl.DataFrame]:
    """The minute bundle, through the Parquet ingest path, and its long frame."""
    tmp = tmp_path_factory.mktemp("intraday_daily")
    frame = _long_frame()
    src = tmp / "minute.parquet"
    frame.write_parquet(src)
    info = ingest_bundle("mini_minute", src, frequency="1m", root=tmp / "bundles")
    assert info.frequency == "1m"
    return load_bundle("mini_minute", root=tmp / "bundles"), frame


def reference(frame: pl.DataFrame, bundle: Bundle, t: int, k: int) -> np.ndarray:
    """``(k, n_assets, 6)`` daily bars at bar ``t``, by polars from the rows stamped at or before it."""
    now = bundle.calendar[t]
    seen = frame.filter(pl.col("date") <= now).with_columns(pl.col("date").dt.date().alias("day"))
    daily = (
        seen.sort("date")
        .group_by("symbol", "day")
        .agg(pl.col("open").first(), pl.col("high").max(), pl.col("low").min(),
             pl.col("close").last(), pl.col("volume").sum(), pl.col("date").last().alias("last"))
    )
    days = np.unique(bundle.calendar[: t + 1].astype("datetime64[D]"))[-k:]
    out = np.full((k, len(bundle.assets), len(FIELDS)), np.nan)
    pad = k - len(days)
    for row in daily.iter_rows(named=True):
        day = np.datetime64(row["day"], "D")
        if day not in days:
            continue
        s = pad + int(np.searchsorted(days, day))
        a = bundle.symbols.index(row["symbol"])
        out[s, a, :5] = [row["open"], row["high"], row["low"], row["close"], row["volume"]]
    # price: the last close at or before the session's end (or now, for today)
    for s, day in enumerate(days, start=pad):
        until = min(now, (day + np.timedelta64(1, "D")).astype("datetime64[ns]") - np.timedelta64(1, "ns"))
        last = seen.filter(pl.col("date") <= until).sort("date").group_by("symbol").agg(pl.col("close").last())
        for row in last.iter_rows(named=True):
            out[s, bundle.symbols.index(row["symbol"]), 5] = row["close"]
    return out


def test_daily_history_matches_polars_at_every_bar(minute):
    bundle, frame = minute
    got: dict[int, np.ndarray] = {}

    class Probe(TradingAlgorithm):
        def handle_data(self, data) -> None:
            got[data.bar_index] = data.history(self.assets, list(FIELDS), K, "1d", return_type="array")

    run_algorithm(Probe, bundle)
    assert len(got) == bundle.shape[0] == 68
    for t, window in got.items():
        np.testing.assert_allclose(window, reference(frame, bundle, t, K), rtol=0, atol=1e-9, err_msg=f"bar {t}")


def test_hand_checked_rows(minute):
    """A few numbers by hand: the short session complete, BBB's missing day, today's partial bar."""
    bundle, frame = minute
    aaa = frame.filter(pl.col("symbol") == "AAA")
    short = aaa.filter(pl.col("date").dt.day() == 6)
    t = int(np.searchsorted(bundle.calendar, np.datetime64("2024-03-07T09:32", "ns")))  # 3rd bar of 03-07
    data = BarData(bundle)
    data._t = t
    w = data.history(bundle.assets[0], ["open", "high", "low", "close", "volume"], 2, "1d", return_type="array")
    assert w[0].tolist() == [short["open"][0], short["high"].max(), short["low"].min(), short["close"][-1],
                             short["volume"].sum()]
    today = aaa.filter(pl.col("date").dt.day() == 7).head(3)
    assert w[1].tolist() == [today["open"][0], today["high"].max(), today["low"].min(), today["close"][-1],
                             today["volume"].sum()]
    bbb = data.history(bundle.assets[1], "close", 3, "1d", return_type="array")
    assert np.isnan(bbb[0])  # 03-05: no BBB bar at all
    assert np.isnan(bbb[2])  # 03-07 so far: BBB opens at 09:35
    # price is the last known close, carried over days without a bar, as in daily bundles
    price = data.history(bundle.assets[1], "price", 3, "1d", return_type="array")
    close_0304 = data.history(bundle.assets[1], "close", 4, "1d", return_type="array")[0]
    assert price[0] == close_0304 and price[1] == price[2] == bbb[1] == bundle.price[t, 1]


def test_shapes_dataframe_and_padding(minute):
    bundle, _ = minute
    data = BarData(bundle)
    data._t = 25  # the 6th bar of the second session
    a, b = bundle.assets
    assert data.history(a, "close", 4, "1d", return_type="array").shape == (4,)
    assert data.history(a, ["open", "close"], 4, "1d", return_type="array").shape == (4, 2)
    assert data.history([a, b], "close", 4, "1d", return_type="array").shape == (4, 2)
    assert data.history([b, a], ["open", "close"], 4, "daily", return_type="array").shape == (4, 2, 2)
    arr = data.history(a, "close", 4, "1d", return_type="array")
    assert np.isnan(arr[:2]).all() and not np.isnan(arr[2:]).any()  # only two sessions so far
    ser = data.history(a, "close", 4, "1d")
    assert isinstance(ser, pd.Series) and ser.index.name == "date"
    assert ser.index[2:].tolist() == [pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-05")]
    assert ser.index[:2].isna().all()
    np.testing.assert_array_equal(ser.to_numpy(), arr)
    df = data.history([a, b], ["open", "close"], 2, "1d")
    assert df.shape == (4, 2) and list(df.columns) == ["open", "close"]
    # the minute window is untouched: still a zero-copy view
    view = data.history([a, b], "close", 5, "1m", return_type="array")
    assert np.shares_memory(view, bundle.close)


def test_before_trading_start_sees_yesterday_complete(minute):
    bundle, frame = minute
    seen: list[np.ndarray] = []

    class Btd(TradingAlgorithm):
        def before_trading_start(self, data) -> None:
            seen.append(data.history(self.assets[0], "close", 2, "1d", return_type="array"))

    run_algorithm(Btd, bundle, commission=NoCommission(), slippage=NoSlippage())
    closes = (frame.filter(pl.col("symbol") == "AAA").sort("date")
              .group_by(pl.col("date").dt.date(), maintain_order=True).agg(pl.col("close").last())["close"].to_list())
    assert len(seen) == 4  # before the first bar (nothing yet: NaN), then sessions 2, 3, 4
    assert np.isnan(seen.pop(0)).all()
    assert np.isnan(seen[0][0]) and seen[0][1] == closes[0]  # only 03-04 has passed
    for i in (1, 2):
        assert seen[i].tolist() == closes[i - 1: i + 1]


def test_errors_name_the_fix(minute):
    bundle, _ = minute
    data = BarData(bundle)
    data._t = 3
    with pytest.raises(HistoryError, match=r"'1m' or '1d'"):
        data.history(bundle.assets[0], "close", 2, "1h")
    with pytest.raises(HistoryError, match="bar_count"):
        data.history(bundle.assets[0], "close", 0, "1d")
    with pytest.raises(HistoryError, match="vwap"):
        data.history(bundle.assets[0], "vwap", 2, "1d")
    with pytest.raises(HistoryError, match="vwap"):
        data.history(bundle.assets[0], ["close", "vwap"], 2, "1d")
    with pytest.raises(HistoryError, match="return_type"):
        data.history(bundle.assets[0], "close", 2, "1d", return_type="numpy")
    data._t = -1  # initialize(): before the first bar, nothing is known
    assert np.isnan(data.history(bundle.assets, "close", 2, "1d", return_type="array")).all()


# -- property: no look-ahead, and equal to a plain loop -------------------------------


@st.composite
def intraday_case(draw):
    n_sessions = draw(st.integers(1, 4))
    n_assets = draw(st.integers(1, 3))
    stamps = []
    for d in range(n_sessions):
        n = draw(st.integers(1, 6))
        day = np.datetime64("2024-01-02", "D") + d
        stamps += [day.astype("datetime64[ns]") + np.timedelta64(570 + m, "m") for m in range(n)]
    cal = np.array(stamps, dtype="datetime64[ns]")
    T = cal.shape[0]
    values = draw(hnp.arrays(np.float64, (5, T, n_assets), elements=st.floats(1.0, 1000.0, width=32)))
    holes = draw(hnp.arrays(np.bool_, (T, n_assets)))  # no bar for the asset there
    values[:, holes] = np.nan
    t = draw(st.integers(0, T - 1))
    k = draw(st.integers(1, 5))
    return cal, values, t, k, draw(st.integers(0, 2**32 - 1))


def _all_fields(bundle: Bundle, t: int, k: int) -> np.ndarray:
    data = BarData(bundle)
    data._t = t
    return data.history(list(bundle.assets), list(FIELDS), k, "1d", return_type="array")


def _loop_reference(cal: np.ndarray, values: np.ndarray, price: np.ndarray, t: int, k: int) -> np.ndarray:
    days = cal.astype("datetime64[D]")
    sessions = np.unique(days[: t + 1])[-k:]
    out = np.full((k, values.shape[2], len(FIELDS)), np.nan)
    for i, day in enumerate(sessions, start=k - len(sessions)):
        rows = np.flatnonzero(days[: t + 1] == day)
        for a in range(values.shape[2]):
            r = [j for j in rows if not np.isnan(values[3, j, a])]
            out[i, a, 5] = price[rows[-1], a]
            if r:
                out[i, a, :5] = [values[0, r[0], a], max(values[1, r, a]), min(values[2, r, a]),
                                 values[3, r[-1], a], sum(values[4, r, a])]
    return out


@settings(max_examples=150, deadline=None)
@given(intraday_case())
def test_no_look_ahead_and_equal_to_loop(case):
    cal, values, t, k, seed = case
    symbols = [f"S{i}" for i in range(values.shape[2])]
    before = Bundle("prop", "1m", cal, symbols, values)
    got = _all_fields(before, t, k)
    np.testing.assert_allclose(got, _loop_reference(cal, values, before.price, t, k), rtol=1e-12, atol=0)
    # Rewrite every bar after t (new numbers, new holes): nothing at t may change.
    rng = np.random.default_rng(seed)
    later = values.copy()
    tail = later[:, t + 1:]
    tail[...] = rng.uniform(1, 1000, tail.shape)
    tail[:, rng.random(tail.shape[1:]) < 0.3] = np.nan
    after = Bundle("prop", "1m", cal, symbols, later)
    if not np.array_equal(later, values, equal_nan=True):  # new data never reuses the old aggregates
        assert after.version != before.version
    np.testing.assert_array_equal(_all_fields(after, t, k), got)


def test_breakout_example_trades_on_prior_session_levels(minute):
    """``IntradayBreakout`` (the benchmark's strategy): entries against yesterday's range from the reference."""
    from rustybt_ray.examples.intraday_breakout import IntradayBreakout

    bundle, frame = minute
    res = run_algorithm(IntradayBreakout, bundle, params={"lookback": 1, "entry_minutes": 5, "exit_minutes": 2},
                        commission=NoCommission(), slippage=NoSlippage())
    days = bundle.sessions
    expected: dict[tuple[str, str], int] = {}
    for day in np.unique(days)[1:]:
        t = int(np.searchsorted(bundle.calendar, day.astype("datetime64[ns]") + np.timedelta64(575, "m")))  # 09:35
        prior = reference(frame, bundle, t, 2)[0]  # yesterday, complete
        for a, sym in enumerate(bundle.symbols):
            p = bundle.price[t, a]
            expected[(str(day), sym)] = 1 if p > prior[a, 1] else (-1 if p < prior[a, 2] else 0)
    assert any(v != 0 for v in expected.values())  # the data do break out somewhere
    tx = res.transactions.with_columns(pl.col("date").dt.date().cast(pl.String).alias("day"))
    for (day, sym), sign in expected.items():
        first = tx.filter((pl.col("day") == day) & (pl.col("symbol") == sym)).head(1)
        if sign == 0:
            assert first.height == 0, (day, sym)
        else:
            assert first.height == 1 and np.sign(first["amount"][0]) == sign, (day, sym)
            assert first["date"][0] > pd.Timestamp(f"{day} 09:35")  # filled after the signal bar
    last_bars = np.r_[days[1:] != days[:-1], True]
    assert (res.positions[last_bars, 0] == 0).all()  # AAA trades every minute: flat at every close
