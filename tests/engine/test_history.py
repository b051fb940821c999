"""``BarData.history``: shapes, array/dataframe agreement, zero-copy views, NaN padding, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rustybt_ray.engine import TradingAlgorithm, run_algorithm
from rustybt_ray.errors import HistoryError

DATES = ["2024-03-01", "2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08", "2024-03-11"]
NAN = float("nan")


@pytest.fixture(scope="module")
def bundle(make):
    return make.bundle(DATES, {
        "AAA": {"open": [1, 2, 3, 4, 5, 6, 7], "close": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5],
                "high": [2, 3, 4, 5, 6, 7, 8], "low": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5],
                "volume": [10, 20, 30, 40, 50, 60, 70]},
        "BBB": {"open": [11, 12, NAN, 14, 15, 16, 17], "close": [11.5, 12.5, NAN, 14.5, 15.5, 16.5, 17.5]},
        "CCC": {"open": [NAN, 22, 23, 24, 25, 26, 27], "close": [NAN, 22.5, 23.5, 24.5, 25.5, 26.5, 27.5]},
    })


def run_probe(bundle, fn, bars=None):
    """Run ``fn(algo, data)`` at every bar (or the listed bars); return {bar: fn's value}."""
    out: dict[int, object] = {}

    class Probe(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if bars is None or t in bars:
                out[t] = fn(self, data)

    run_algorithm(Probe, bundle)
    return out


FIELDS_2 = ["open", "close"]


def test_shapes_and_array_equals_dataframe(bundle):
    T = 4  # bar_count

    def fn(algo, data):
        a, b = algo.assets[0], algo.assets[1]
        cases = {}
        for name, assets, fields in [
            ("one_one", a, "close"),
            ("one_many", a, FIELDS_2),
            ("many_one", [a, b], "close"),
            ("many_many", [a, b], FIELDS_2),
        ]:
            cases[name] = (data.history(assets, fields, T, "1d", return_type="array").copy(),
                           data.history(assets, fields, T, "1d", return_type="dataframe"))
        return cases

    t = 5  # the window (bars 2..5) includes BBB's missing bar 2
    cases = run_probe(bundle, fn, {t})[t]
    o, c = bundle.open, bundle.close
    times = pd.DatetimeIndex(np.asarray(DATES[t - 3:t + 1], dtype="datetime64[ns]"))

    arr, df = cases["one_one"]
    assert arr.shape == (T,)
    np.testing.assert_array_equal(arr, c[t - 3:t + 1, 0])
    assert isinstance(df, pd.Series)
    np.testing.assert_array_equal(df.to_numpy(), arr)
    assert (df.index == times).all()

    arr, df = cases["one_many"]
    assert arr.shape == (T, 2)
    np.testing.assert_array_equal(arr, np.stack([o[t - 3:t + 1, 0], c[t - 3:t + 1, 0]], axis=-1))
    assert isinstance(df, pd.DataFrame) and list(df.columns) == FIELDS_2
    np.testing.assert_array_equal(df.to_numpy(), arr)
    assert (df.index == times).all()

    arr, df = cases["many_one"]
    assert arr.shape == (T, 2)
    np.testing.assert_array_equal(arr, c[t - 3:t + 1, 0:2])
    assert isinstance(df, pd.DataFrame) and [int(x) for x in df.columns] == [0, 1]
    np.testing.assert_array_equal(df.to_numpy(), arr)
    assert (df.index == times).all()

    arr, df = cases["many_many"]
    assert arr.shape == (T, 2, 2)
    np.testing.assert_array_equal(arr, np.stack([o[t - 3:t + 1, 0:2], c[t - 3:t + 1, 0:2]], axis=-1))
    for i in range(T):
        for j in range(2):
            for f, name in enumerate(FIELDS_2):
                np.testing.assert_array_equal(df.loc[(times[i], bundle.assets[j]), name], arr[i, j, f])
    assert isinstance(df.index, pd.MultiIndex) and df.shape == (T * 2, 2) and list(df.columns) == FIELDS_2


def test_every_field_and_price_is_forward_filled(bundle):
    def fn(algo, data):
        return {f: data.history(algo.assets, f, 3, return_type="array").copy()
                for f in ("open", "high", "low", "close", "volume", "price")}

    got = run_probe(bundle, fn, {3})[3]
    assert got["high"][:, 0].tolist() == [3, 4, 5] and got["low"][:, 0].tolist() == [1.5, 2.5, 3.5]
    assert got["volume"][:, 0].tolist() == [20, 30, 40]
    # BBB has no bar at 2: close NaN there, price carries 12.5 forward
    assert np.isnan(got["close"][1, 1]) and got["price"][1, 1] == 12.5
    np.testing.assert_array_equal(got["price"][:, 1], [12.5, 12.5, 14.5])
    # CCC starts at bar 1: price is NaN before it (nothing to carry)
    assert got["price"][:, 2].tolist() == [22.5, 23.5, 24.5]


def test_one_field_is_a_zero_copy_read_only_view(bundle):
    def fn(algo, data):
        a = algo.assets
        return [
            data.history(a, "close", 3, return_type="array"),  # all assets
            data.history(a[1:], "close", 3, return_type="array"),  # a contiguous run
            data.history(a[0], "open", 3, return_type="array"),  # one asset
            data.history([a[2], a[0]], "close", 3, return_type="array"),  # out of order: a copy
            data.history(a, ["open", "close"], 3, return_type="array"),  # several fields: a copy
        ]

    views = run_probe(bundle, fn, {4})[4]
    for v in views[:3]:
        assert np.shares_memory(v, bundle.values)
        assert not v.flags.writeable
        with pytest.raises(ValueError):
            v[0] = 0.0
    assert not np.shares_memory(views[3], bundle.values)
    np.testing.assert_array_equal(views[3], bundle.close[2:5][:, [2, 0]])
    assert not np.shares_memory(views[4], bundle.values)


def test_nan_padding_before_the_first_bar(bundle):
    def fn(algo, data):
        return (data.history(algo.assets, "close", 4, return_type="array").copy(),
                data.history(algo.assets[0], ["open", "close"], 4, return_type="array").copy(),
                data.history(algo.assets, "close", 4, return_type="dataframe"))

    got = run_probe(bundle, fn, {0, 1})
    arr, arr2, df = got[1]
    assert arr.shape == (4, 3)
    assert np.isnan(arr[:2]).all()
    np.testing.assert_array_equal(arr[2:], bundle.close[0:2])
    assert arr2.shape == (4, 2) and np.isnan(arr2[:2]).all() and arr2[3].tolist() == [2, 2.5]
    assert df.shape == (4, 3) and df.index[:2].isna().all() and df.index[2] == pd.Timestamp(DATES[0])
    np.testing.assert_array_equal(df.to_numpy(), arr)
    arr0 = got[0][0]
    assert np.isnan(arr0[:3]).all() and arr0[3, 0] == 1.5


def test_warm_up_before_start_is_real_data_not_padding(bundle):
    seen = {}

    class Probe(TradingAlgorithm):
        def handle_data(self, data) -> None:
            seen.setdefault(data.bar_index, data.history(self.assets[0], "close", 3, return_type="array").copy())

    run_algorithm(Probe, bundle, start=DATES[3])
    assert min(seen) == 3
    assert seen[3].tolist() == [2.5, 3.5, 4.5]


def test_errors(bundle):
    def fn(algo, data):
        errs = {}
        for key, call in {
            "freq_1m": lambda: data.history(algo.assets, "close", 2, "1m"),
            "freq_1h": lambda: data.history(algo.assets, "close", 2, "1h"),
            "field": lambda: data.history(algo.assets, "vwap", 2),
            "field_in_list": lambda: data.history(algo.assets, ["close", "vwap"], 2),
            "bar_count": lambda: data.history(algo.assets, "close", 0),
            "return_type": lambda: data.history(algo.assets, "close", 2, return_type="numpy"),
            "current_field": lambda: data.current(algo.assets, "vwap"),
        }.items():
            try:
                call()
            except HistoryError as exc:
                errs[key] = str(exc)
        # aliases of the bundle's own frequency are fine
        ok = [data.history(algo.assets, "close", 2, f, return_type="array").shape for f in ("1d", "daily", None)]
        return errs, ok

    errs, ok = run_probe(bundle, fn, {2})[2]
    assert set(errs) == {"freq_1m", "freq_1h", "field", "field_in_list", "bar_count", "return_type", "current_field"}
    assert "1d" in errs["freq_1m"] and "vwap" in errs["field"] and "vwap" in errs["field_in_list"]
    assert ok == [(2, 3)] * 3


def test_current_and_can_trade(bundle):
    def fn(algo, data):
        a = algo.assets
        return (data.current(a[1], "close"), data.current(a[1], "price"), data.can_trade(a[1]),
                data.can_trade(a).tolist(), data.current(a, ["open", "close"]).copy(), data.is_stale(a[1]))

    got = run_probe(bundle, fn, {0, 2})
    close_b, price_b, can_b, can_all, oc, stale = got[2]
    assert np.isnan(close_b) and price_b == 12.5 and can_b is False and stale is True
    assert can_all == [True, False, True]
    np.testing.assert_array_equal(oc, np.array([[3, 3.5], [NAN, NAN], [23, 23.5]]))
    assert got[0][3] == [True, True, False]
