"""The embedded demo bundle loads with no ingest and no network."""

from __future__ import annotations

import numpy as np

from rustybt_ray.data import list_bundles, load_bundle
from rustybt_ray.data.registry import DEMO_DIR
from rustybt_ray.data.storage import read_manifest

SYMBOLS = {"AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "SPY"}


def test_demo_loads() -> None:
    bundle = load_bundle("demo")
    assert set(bundle.symbols) == SYMBOLS
    assert bundle.frequency == "1d"
    assert bundle.version == read_manifest(DEMO_DIR).sha256
    assert (DEMO_DIR / "data.parquet").stat().st_size <= 1_100_000
    assert (DEMO_DIR / "DATA_NOTE.md").is_file()
    assert list_bundles() == []  # built in, not registered


def test_demo_contents_are_plausible() -> None:
    bundle = load_bundle("demo")
    first = bundle.calendar[0]
    if first <= np.datetime64("2012-05-18"):
        assert bundle.symbol("META").start_date == np.datetime64("2012-05-18")
    assert np.all(np.isnan(bundle.close) | (bundle.close > 0))
    aapl = bundle.symbol("AAPL")
    i0, i1 = bundle.index_range("2020-12-31", "2020-12-31")
    if i1 > i0:
        assert abs(bundle.close[i0, aapl] - 129.29) < 0.05  # README: adjusted close 129.29
