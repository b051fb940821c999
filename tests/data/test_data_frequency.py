"""Bar-frequency inference: daily, hourly, minute; explicit frequency; mixed and irregular data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from bundle_testkit import FIXTURES, SHARED

from rustybt_ray.data import ingest_bundle, load_bundle
from rustybt_ray.data.frequency import normalize_frequency
from rustybt_ray.errors import BundleValidationError


def _bars(symbol: str, stamps: list[str]) -> pl.DataFrame:
    n = len(stamps)
    return pl.DataFrame({"date": stamps, "symbol": [symbol] * n, "open": [1.0] * n, "high": [1.0] * n,
                         "low": [1.0] * n, "close": [1.0] * n, "volume": [1.0] * n})


def test_daily(csv_dir: Path) -> None:
    assert ingest_bundle("d", csv_dir).frequency == "1d"


def test_hourly_fixture_with_half_hour_offsets() -> None:
    info = ingest_bundle("h", FIXTURES / "hourly")
    assert info.frequency == "1h"
    bundle = load_bundle("h")
    assert bundle.shape == (35, 2)
    assert str(bundle.calendar[0]).startswith("2023-05-05T09:30")
    assert bundle.periods_per_year == 252 * 7


def test_minute_fixture() -> None:
    assert ingest_bundle("m", FIXTURES / "minute").frequency == "1m"


@pytest.mark.parametrize("minutes,code", [(5, "5m"), (15, "15m"), (30, "30m"), (120, "2h")])
def test_intraday_codes(minutes: int, code: str) -> None:
    days = ["2024-01-02", "2024-01-03"]
    stamps = [
        f"{day} {(570 + k * minutes) // 60:02d}:{(570 + k * minutes) % 60:02d}:00" for day in days for k in range(3)
    ]
    assert ingest_bundle("f", _bars("A", stamps)).frequency == code


def test_missing_bars_do_not_change_the_code() -> None:
    stamps = ["2024-01-02 09:30:00", "2024-01-02 09:31:00", "2024-01-02 09:35:00", "2024-01-02 09:36:00",
              "2024-01-03 04:00:00", "2024-01-03 04:01:00"]
    assert ingest_bundle("f", _bars("A", stamps)).frequency == "1m"


def test_explicit_frequency_matching_and_mismatching(csv_dir: Path) -> None:
    assert ingest_bundle("ok", csv_dir, frequency="1D").frequency == "1d"
    with pytest.raises(BundleValidationError, match=r"frequency='1h' was given but the data has 1d bars"):
        ingest_bundle("bad", csv_dir, frequency="1h")
    with pytest.raises(BundleValidationError, match=r"frequency='60m' was given but the data has 1m bars"):
        ingest_bundle("bad", FIXTURES / "minute", frequency="60m")
    assert ingest_bundle("ok60", FIXTURES / "hourly", frequency="60m").frequency == "1h"


@pytest.mark.parametrize("code", ["1x", "0m", "2d", "daily", "", "m"])
def test_malformed_frequency_codes(code: str) -> None:
    with pytest.raises(BundleValidationError, match="is not a bar frequency"):
        normalize_frequency(code)


def test_mixed_frequency_raises_even_when_lenient(tmp_path: Path) -> None:
    daily = _bars("DAILY", ["2024-01-02", "2024-01-03", "2024-01-04"])
    hourly = _bars("HOURLY", ["2024-01-02 09:30:00", "2024-01-02 10:30:00", "2024-01-02 11:30:00"])
    mixed = pl.concat([daily, hourly])
    for lenient in (False, True):
        with pytest.raises(BundleValidationError) as err:
            ingest_bundle("mixed", mixed, lenient=lenient)
        assert "mixed bar frequency" in err.value.problem
        assert "DAILY is 1d" in err.value.problem and "HOURLY is 1h" in err.value.problem


def test_irregular_spacing_raises() -> None:
    stamps = ["2024-01-02 09:30:00", "2024-01-02 09:35:00", "2024-01-02 09:40:00", "2024-01-02 09:47:00"]
    with pytest.raises(BundleValidationError, match="irregular bar frequency") as err:
        ingest_bundle("irr", _bars("A", stamps))
    assert err.value.symbol == "A" and "7m" in err.value.problem


def test_sub_minute_bars_raise() -> None:
    stamps = ["2024-01-02 09:30:00", "2024-01-02 09:30:30", "2024-01-02 09:31:00"]
    with pytest.raises(BundleValidationError, match="not a whole number of minutes"):
        ingest_bundle("sec", _bars("A", stamps))


def test_weekly_bars_raise() -> None:
    stamps = ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"]
    with pytest.raises(BundleValidationError, match="7 days apart"):
        ingest_bundle("w", _bars("A", stamps))


def test_sparse_symbol_takes_the_others_frequency() -> None:
    busy = _bars("BUSY", ["2024-01-02 09:30:00", "2024-01-02 09:31:00", "2024-01-02 09:32:00"])
    sparse = _bars("SPARSE", ["2024-01-02 09:31:00"])
    assert ingest_bundle("s", pl.concat([busy, sparse])).frequency == "1m"


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs /work/shared/data")
@pytest.mark.parametrize(
    "directory,code",
    [("mag7_daily_yf_2005_2025", "1d"), ("mag7_hourly_yf_2023_2026", "1h"), ("spy_minute_ninjatrader_2011", "1m"),
     ("mag7_daily_stooq_1984_2017", "1d"), ("mag7_daily_yf_splitadj_2013_2023", "1d")],
)
def test_real_data_passes_and_infers(directory: str, code: str) -> None:
    info = ingest_bundle("real", SHARED / directory)
    assert info.frequency == code and info.dropped == ()
