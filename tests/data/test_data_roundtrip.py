"""Ingest → store → load gives back exactly the input, whatever the source kind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from bundle_testkit import ROWS

from rustybt_ray.data import Bundle, ingest_bundle, load_bundle
from rustybt_ray.data.storage import DATA_FILE, MANIFEST_FILE


def _expected(symbol: str) -> dict[str, tuple[float, ...]]:
    out = {}
    for line in ROWS[symbol]:
        date, *values = line.split(",")
        out[date] = tuple(float(v) for v in values)
    return out


def test_csv_round_trip_values_calendar_and_nan(csv_dir: Path) -> None:
    info = ingest_bundle("tiny", csv_dir)
    bundle = load_bundle("tiny")
    assert bundle.symbols == ["AAA", "BBB", "CCC"]
    assert bundle.frequency == "1d"
    expected_calendar = sorted({line.split(",")[0] for lines in ROWS.values() for line in lines})
    np.testing.assert_array_equal(bundle.calendar, np.array(expected_calendar, dtype="datetime64[ns]"))
    for sid, symbol in enumerate(bundle.symbols):
        rows = _expected(symbol)
        for t, day in enumerate(expected_calendar):
            got = np.array([bundle.open[t, sid], bundle.high[t, sid], bundle.low[t, sid],
                            bundle.close[t, sid], bundle.volume[t, sid]])
            if day in rows:
                np.testing.assert_array_equal(got, np.array(rows[day]))
            else:
                assert np.isnan(got).all(), (symbol, day)
    # BBB has no bar on 2024-01-03: price carries the previous close forward.
    assert bundle.price[1, 1] == 20.5
    assert bundle.version == info.sha256


def test_manifest_facts(csv_dir: Path) -> None:
    info = ingest_bundle("tiny", csv_dir)
    manifest = json.loads((info.path / MANIFEST_FILE).read_text())
    data = (info.path / DATA_FILE).read_bytes()
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() == info.sha256
    assert manifest["rows"] == info.rows == 10
    assert manifest["frequency"] == "1d"
    assert manifest["first_bar"] == "2024-01-02" and manifest["last_bar"] == "2024-01-08"
    assert manifest["spans"]["BBB"] == {"first_bar": "2024-01-02", "last_bar": "2024-01-05", "rows": 3}
    assert manifest["spans"]["CCC"]["first_bar"] == "2024-01-04"
    assert manifest["symbols"] == ["AAA", "BBB", "CCC"]
    assert manifest["schema_version"] == 1 and manifest["name"] == "tiny"
    assert manifest["rustybt_ray_version"]
    assert manifest["created_at"].endswith("+00:00")


def test_stored_parquet_is_sorted_by_symbol_then_date(csv_dir: Path) -> None:
    info = ingest_bundle("tiny", csv_dir)
    frame = pl.read_parquet(info.path / DATA_FILE)
    assert frame.equals(frame.sort("symbol", "date"))
    assert frame.columns == ["date", "symbol", "open", "high", "low", "close", "volume"]


def _long_frame(csv_dir: Path) -> pl.DataFrame:
    frames = [
        pl.read_csv(p).with_columns(pl.lit(p.stem).alias("symbol"), pl.col("date").str.to_date())
        for p in sorted(csv_dir.glob("*.csv"))
    ]
    return pl.concat(frames).select("date", "symbol", "open", "high", "low", "close", "volume")


def _same(a: Bundle, b: Bundle) -> None:
    assert a.symbols == b.symbols and a.frequency == b.frequency
    np.testing.assert_array_equal(a.calendar, b.calendar)
    np.testing.assert_array_equal(a.values, b.values)


def test_all_source_kinds_give_identical_bundles(csv_dir: Path, tmp_path: Path) -> None:
    frame = _long_frame(csv_dir)
    parquet_file = tmp_path / "long.parquet"
    frame.write_parquet(parquet_file)
    parquet_dir = tmp_path / "parts"
    parquet_dir.mkdir()
    for (symbol,), part in frame.group_by("symbol"):
        part.write_parquet(parquet_dir / f"{symbol}.parquet")
    pandas_frame = frame.to_pandas()
    sources = {
        "csv": csv_dir,
        "pq_file": parquet_file,
        "pq_dir": parquet_dir,
        "polars": frame,
        "lazy": frame.lazy(),
        "pandas": pandas_frame,
        "pandas_indexed": pandas_frame.set_index(["date", "symbol"]),
    }
    bundles = {}
    for name, source in sources.items():
        ingest_bundle(name, source)
        bundles[name] = load_bundle(name)
    for name, bundle in bundles.items():
        _same(bundles["csv"], bundle)
        assert bundle.version == bundles["csv"].version, name  # same bytes on disk


def test_datetime_and_string_dates_agree(csv_dir: Path) -> None:
    frame = _long_frame(csv_dir)
    as_text = frame.with_columns(pl.col("date").dt.to_string("%Y-%m-%d"))
    as_datetime = frame.with_columns(pl.col("date").cast(pl.Datetime("us")))
    as_aware = frame.with_columns(pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("America/New_York"))
    ingest_bundle("text", as_text)
    ingest_bundle("dt", as_datetime)
    ingest_bundle("aware", as_aware)
    _same(load_bundle("text"), load_bundle("dt"))
    _same(load_bundle("text"), load_bundle("aware"))


def test_header_is_case_insensitive_and_extra_columns_ignored(make_csv_dir) -> None:
    rows = {"AAA": [line + ",x" for line in ROWS["AAA"]]}
    directory = make_csv_dir(rows, header="Date,OPEN,High,low,Close,Volume,Adj Note")
    ingest_bundle("cased", directory)
    assert load_bundle("cased").close[:, 0].tolist() == [10.5, 11.0, 11.5, 12.0]


def test_csv_gz_files_are_read(csv_dir: Path, tmp_path: Path) -> None:
    import gzip

    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    for p in csv_dir.glob("*.csv"):
        (gz_dir / (p.name + ".gz")).write_bytes(gzip.compress(p.read_bytes()))
    ingest_bundle("plain", csv_dir)
    ingest_bundle("gz", gz_dir)
    _same(load_bundle("plain"), load_bundle("gz"))


def test_load_by_path_and_bundle_passthrough(csv_dir: Path) -> None:
    info = ingest_bundle("tiny", csv_dir)
    by_name = load_bundle("tiny")
    by_version_dir = load_bundle(info.path)
    by_home_dir = load_bundle(str(info.path.parent))
    _same(by_name, by_version_dir)
    _same(by_name, by_home_dir)
    assert load_bundle(by_name) is by_name


def test_pandas_nan_is_reported_as_missing() -> None:
    frame = pd.DataFrame(
        {"date": pd.to_datetime(["2024-01-02", "2024-01-03"]), "symbol": ["A", "A"],
         "open": [1.0, 1.0], "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, np.nan], "volume": [1, 1]}
    )
    from rustybt_ray.errors import BundleValidationError

    with pytest.raises(BundleValidationError) as err:
        ingest_bundle("p", frame)
    assert err.value.row == 1 and err.value.symbol == "A" and "close" in err.value.problem


def test_intraday_csv_round_trip_matches_file_values() -> None:
    from bundle_testkit import FIXTURES

    ingest_bundle("hourly", FIXTURES / "hourly")
    bundle = load_bundle("hourly")
    for sid, symbol in enumerate(bundle.symbols):
        raw = pl.read_csv(FIXTURES / "hourly" / f"{symbol}.csv")
        stamps = raw["date"].str.strptime(pl.Datetime("ns"), "%Y-%m-%d %H:%M:%S").to_numpy()
        rows = np.searchsorted(bundle.calendar, stamps)
        np.testing.assert_array_equal(bundle.calendar[rows], stamps)
        for field in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(bundle.field(field)[rows, sid], raw[field].cast(pl.Float64).to_numpy())


def test_lenient_report_for_a_frame_has_no_file() -> None:
    frame = pl.DataFrame({"date": ["2024-01-02", "2024-01-03", "2024-01-04"], "symbol": ["A", "A", "A"],
                          "open": [1.0, 1.0, 1.0], "high": [1.0, 1.0, 1.0], "low": [1.0, 1.0, 1.0],
                          "close": [1.0, -1.0, 1.0], "volume": [1.0, 1.0, 1.0]})
    info = ingest_bundle("f", frame, lenient=True)
    assert [tuple(d)[:3] for d in info.dropped] == [(None, "A", 1)]
    assert info.rows == 2


def test_bundle_info_reads_only_the_manifest(csv_dir: Path) -> None:
    from rustybt_ray.data import bundle_info

    info = ingest_bundle("tiny", csv_dir)
    again = bundle_info("tiny")
    assert again.sha256 == info.sha256 and again.path == info.path and again.dropped == ()
    assert bundle_info("demo").frequency == "1d"
