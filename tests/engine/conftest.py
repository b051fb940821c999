"""Shared fixtures for the engine tests: tiny synthetic bundles and the demo bundle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import pytest

from rustybt_ray.data.bundle import Bundle

OHLCV = ("open", "high", "low", "close", "volume")


def make_bundle(
    dates: Sequence[str] | np.ndarray,
    data: Mapping[str, Mapping[str, Sequence[float]]],
    frequency: str = "1d",
    name: str = "synthetic",
) -> Bundle:
    """A bundle from per-symbol field lists, through ``Bundle.from_long_frame``.

    ``data[symbol]`` needs ``open`` and ``close``; ``high``/``low`` default to
    max/min of them, ``volume`` to 1000. A bar whose close is NaN is left out of
    the long frame, so the asset has no bar there (all its fields are NaN).
    """
    cal = np.asarray(dates, dtype="datetime64[ns]")
    rows: dict[str, list] = {"date": [], "symbol": [], **{f: [] for f in OHLCV}}
    for sym, fields in data.items():
        o = np.asarray(fields["open"], dtype=float)
        c = np.asarray(fields["close"], dtype=float)
        h = np.asarray(fields.get("high", np.fmax(o, c)), dtype=float)
        lo = np.asarray(fields.get("low", np.fmin(o, c)), dtype=float)
        v = np.asarray(fields.get("volume", np.full(len(c), 1000.0)), dtype=float)
        for t in range(len(cal)):
            if np.isnan(c[t]):
                continue
            rows["date"].append(cal[t])
            rows["symbol"].append(sym)
            for f, arr in zip(OHLCV, (o, h, lo, c, v), strict=True):
                rows[f].append(float(arr[t]))
    rows["date"] = pl.Series("date", np.array(rows["date"], dtype="datetime64[ns]"))
    frame = pl.DataFrame(rows)
    return Bundle.from_long_frame(frame, name, frequency)


def bundle_from_arrays(open_: np.ndarray, close: np.ndarray, frequency: str = "1d",
                       start: str = "2024-01-01") -> Bundle:
    """A bundle straight from ``(T, N)`` open/close arrays on consecutive business days (fast path for hypothesis)."""
    T, N = close.shape
    cal = np.busday_offset(np.datetime64(start, "D"), np.arange(T), roll="forward").astype("datetime64[ns]")
    nan = np.isnan(close)
    open_ = np.where(nan, np.nan, open_)
    values = np.stack([open_, np.fmax(open_, close), np.fmin(open_, close), close,
                       np.where(nan, np.nan, 1000.0)])
    return Bundle("random", frequency, cal, [f"S{i}" for i in range(N)], values)


@pytest.fixture(scope="session")
def demo_bundle() -> Bundle:
    """The embedded demo bundle (8 symbols, daily, 2005-10 .. 2025-10)."""
    from rustybt_ray.data import load_bundle

    return load_bundle("demo")


@pytest.fixture(scope="session")
def make() -> object:
    """The bundle builders, as a fixture: ``make.bundle(...)`` and ``make.arrays(...)``."""

    class _Make:
        bundle = staticmethod(make_bundle)
        arrays = staticmethod(bundle_from_arrays)

    return _Make
