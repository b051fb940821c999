"""Property: a long frame survives Bundle.from_long_frame → to_long_frame (and the disk) exactly."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustybt_ray.data import Bundle
from rustybt_ray.data.storage import read_bundle_dir, write_bundle_dir

_price = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def long_frames(draw: st.DrawFn) -> pl.DataFrame:
    symbols = draw(st.lists(st.text("ABCDEFGHXYZ.", min_size=1, max_size=5), min_size=1, max_size=5, unique=True))
    days = np.datetime64("2020-01-01") + np.arange(30)
    rows = []
    for symbol in symbols:
        chosen = draw(st.lists(st.integers(0, 29), min_size=1, max_size=30, unique=True))
        for d in chosen:
            a, b, c, e = draw(_price), draw(_price), draw(_price), draw(_price)
            low, high = min(a, b, c, e), max(a, b, c, e)
            rows.append((days[d], symbol, a, high, low, e, float(draw(st.integers(0, 10**12)))))
    rows = draw(st.permutations(rows))
    date, symbol, o, h, lo, c, v = zip(*rows, strict=True)
    return pl.DataFrame({"date": np.array(date, dtype="datetime64[ns]"), "symbol": list(symbol), "open": o,
                         "high": h, "low": lo, "close": c, "volume": v})


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("date").cast(pl.Datetime("ns"))).sort("symbol", "date")


@given(long_frames())
@settings(max_examples=60, deadline=None)
def test_from_long_frame_round_trips(frame: pl.DataFrame) -> None:
    bundle = Bundle.from_long_frame(frame, "p", "1d")
    assert bundle.symbols == sorted(set(frame["symbol"].to_list()))
    assert _canonical(bundle.to_long_frame()).equals(_canonical(frame))


@given(frame=long_frames())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_disk_round_trips(frame: pl.DataFrame, tmp_path: Path) -> None:
    dest = tmp_path / uuid.uuid4().hex
    write_bundle_dir(_canonical(frame), dest, name="p", frequency="1d")
    assert _canonical(read_bundle_dir(dest).to_long_frame()).equals(_canonical(frame))
