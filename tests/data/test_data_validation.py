"""Every validation error names file, symbol, row and problem; lenient mode drops and reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rustybt_ray.data import DroppedRow, ingest_bundle, load_bundle
from rustybt_ray.errors import BundleValidationError

GOOD = [
    "2024-01-02,10.0,11.0,9.5,10.5,1000",
    "2024-01-03,10.5,11.5,10.0,11.0,1100",
    "2024-01-04,11.0,12.0,10.5,11.5,1200",
    "2024-01-05,11.5,12.5,11.0,12.0,1300",
]


def _fail(source, **kwargs) -> BundleValidationError:
    with pytest.raises(BundleValidationError) as err:
        ingest_bundle("bad", source, **kwargs)
    return err.value


# (bad line replacing GOOD[1] at data row 2, words the message must contain)
ROW_PROBLEMS = {
    "non_numeric": ("2024-01-03,10.5,abc,10.0,11.0,1100", ["high", "'abc'", "not a number"]),
    "empty_value": ("2024-01-03,10.5,11.5,,11.0,1100", ["low is missing"]),
    "bad_date": ("2024-13-45,10.5,11.5,10.0,11.0,1100", ["cannot parse date", "2024-13-45"]),
    "nan": ("2024-01-03,10.5,11.5,10.0,NaN,1100", ["close is NaN"]),
    "inf": ("2024-01-03,10.5,inf,10.0,11.0,1100", ["high is inf"]),
    "zero_price": ("2024-01-03,0,11.5,10.0,11.0,1100", ["open 0", "not positive"]),
    "negative_price": ("2024-01-03,10.5,11.5,-10.0,11.0,1100", ["low -10", "not positive"]),
    "negative_volume": ("2024-01-03,10.5,11.5,10.0,11.0,-5", ["volume -5", "negative"]),
    "high_below_low": ("2024-01-03,10.5,9.0,10.0,9.5,1100", ["high 9", "below low 10"]),
    "open_outside": ("2024-01-03,12.5,11.5,10.0,11.0,1100", ["open 12.5", "outside [low 10", "high 11.5]"]),
    "close_outside": ("2024-01-03,10.5,11.5,10.0,9.0,1100", ["close 9", "outside"]),
    "duplicate": ("2024-01-02,10.0,11.0,9.5,10.5,1000", ["duplicate bar for AAA", "2024-01-02", "row 1"]),
}


@pytest.mark.parametrize("case", sorted(ROW_PROBLEMS))
def test_row_problem_names_file_symbol_row(case: str, make_csv_dir) -> None:
    line, words = ROW_PROBLEMS[case]
    lines = list(GOOD)
    lines[1] = line
    directory = make_csv_dir({"AAA": lines, "BBB": GOOD})
    err = _fail(directory)
    assert err.file == str(directory / "AAA.csv")
    assert err.symbol == "AAA"
    assert err.row == 2
    message = str(err)
    assert f"file {directory / 'AAA.csv'}" in message and "symbol AAA" in message and "row 2" in message
    for word in words:
        assert word in err.problem, (word, err.problem)


@pytest.mark.parametrize("case", sorted(ROW_PROBLEMS))
def test_lenient_drops_exactly_the_bad_row(case: str, make_csv_dir) -> None:
    line, words = ROW_PROBLEMS[case]
    lines = list(GOOD)
    lines[1] = line
    directory = make_csv_dir({"AAA": lines, "BBB": GOOD})
    info = ingest_bundle("lenient", directory, lenient=True)
    assert len(info.dropped) == 1
    dropped = info.dropped[0]
    assert isinstance(dropped, DroppedRow)
    assert (dropped.file, dropped.symbol, dropped.row) == (str(directory / "AAA.csv"), "AAA", 2)
    assert words[0] in dropped.problem
    bundle = load_bundle("lenient")
    aaa = bundle.symbol("AAA")
    # AAA keeps 3 of its 4 bars (a duplicate keeps its first copy and drops the second).
    assert int((~np.isnan(bundle.close[:, aaa])).sum()) == 3
    assert info.rows == 7


def test_lenient_reports_every_bad_row_in_input_order(make_csv_dir) -> None:
    lines = list(GOOD)
    lines[0] = "2024-01-02,10.0,11.0,9.5,-1,1000"
    lines[2] = "2024-01-04,11.0,12.0,10.5,11.5,-3"
    directory = make_csv_dir({"AAA": lines, "BBB": ["2024-01-02,1,1,1,1,x", *GOOD[1:]]})
    info = ingest_bundle("lenient", directory, lenient=True)
    assert [(d.symbol, d.row) for d in info.dropped] == [("AAA", 1), ("AAA", 3), ("BBB", 1)]
    assert "volume 'x' is not a number" in info.dropped[2].problem


def test_strict_error_counts_other_bad_rows(make_csv_dir) -> None:
    lines = ["2024-01-02,10.0,11.0,9.5,-1,1000", "2024-01-03,10.0,11.0,9.5,-1,1000", *GOOD[2:]]
    err = _fail(make_csv_dir({"AAA": lines}))
    assert err.row == 1 and "1 more bad rows" in err.problem and "lenient=True" in err.problem


def test_ohlc_tolerance_accepts_last_bit_differences(make_csv_dir) -> None:
    high = 11.0
    close = float(np.nextafter(high, np.inf))  # adjusted data: close a hair above high
    lines = [f"2024-01-02,10.0,{high!r},9.5,{close!r},1000", *GOOD[1:]]
    ingest_bundle("ulp", make_csv_dir({"AAA": lines}))
    assert load_bundle("ulp").close[0, 0] == close


def test_missing_columns_name_file_and_columns(make_csv_dir) -> None:
    no_volume = [",".join(line.split(",")[:5]) for line in GOOD]
    directory = make_csv_dir({"AAA": no_volume}, header="date,open,high,low,close")
    err = _fail(directory)
    assert err.file == str(directory / "AAA.csv")
    assert "missing columns: volume" in err.problem and "found: date, open, high, low, close" in err.problem


def test_missing_columns_raise_even_when_lenient(make_csv_dir) -> None:
    directory = make_csv_dir({"AAA": [line.rsplit(",", 1)[0] for line in GOOD]}, header="date,open,high,low,close")
    _fail(directory, lenient=True)


def test_missing_symbol_column_in_frame() -> None:
    frame = pl.DataFrame({"date": ["2024-01-02"], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0],
                          "volume": [1.0]})
    err = _fail(frame)
    assert "missing columns: symbol" in err.problem and err.file is None


def test_non_numeric_column_type_in_frame() -> None:
    frame = pl.DataFrame({"date": ["2024-01-02"], "symbol": ["A"], "open": [1.0], "high": [1.0], "low": [1.0],
                          "close": [[1.0]], "volume": [1.0]})
    err = _fail(frame)
    assert "column 'close' is not numeric" in err.problem


def test_frame_rows_are_zero_based_positions() -> None:
    frame = pl.DataFrame({
        "date": ["2024-01-02", "2024-01-03", "2024-01-04"], "symbol": ["A", "A", "A"],
        "open": [1.0, 1.0, 1.0], "high": [1.0, 1.0, 1.0], "low": [1.0, 1.0, 1.0],
        "close": [1.0, 1.0, 5.0], "volume": [1.0, 1.0, 1.0],
    })
    err = _fail(frame)
    assert err.row == 2 and err.symbol == "A" and err.file is None
    assert frame.row(err.row, named=True)["close"] == 5.0


def test_empty_inputs(tmp_path: Path, make_csv_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty input" in _fail(empty).problem
    assert "empty input" in _fail(make_csv_dir({"AAA": []})).problem
    frame = pl.DataFrame(schema={c: pl.String for c in ["date", "symbol", "open", "high", "low", "close", "volume"]})
    assert "empty input" in _fail(frame).problem
    assert "empty input" in _fail(frame, lenient=True).problem


def test_all_rows_bad_in_lenient_mode_is_empty_input(make_csv_dir) -> None:
    err = _fail(make_csv_dir({"AAA": ["2024-01-02,1,1,1,-1,1"]}), lenient=True)
    assert "empty input" in err.problem and "close -1" in err.problem


def test_unsorted_input_is_sorted(make_csv_dir) -> None:
    shuffled = [GOOD[2], GOOD[0], GOOD[3], GOOD[1]]
    ingest_bundle("sorted", make_csv_dir({"AAA": GOOD}))
    ingest_bundle("shuffled", make_csv_dir({"AAA": shuffled}))
    a, b = load_bundle("sorted"), load_bundle("shuffled")
    np.testing.assert_array_equal(a.values, b.values)
    assert a.version == b.version
    assert np.all(np.diff(b.calendar.astype(np.int64)) > 0)


def test_duplicate_across_parquet_files_names_both_places(tmp_path: Path) -> None:
    part = pl.DataFrame({"date": ["2024-01-02"], "symbol": ["A"], "open": [1.0], "high": [1.0], "low": [1.0],
                         "close": [1.0], "volume": [1.0]})
    directory = tmp_path / "pq"
    directory.mkdir()
    part.write_parquet(directory / "a.parquet")
    part.write_parquet(directory / "b.parquet")
    err = _fail(directory)
    assert err.file == str(directory / "b.parquet") and err.row == 1
    assert f"first seen at file {directory / 'a.parquet'}, row 1" in err.problem


def test_missing_symbol_value_in_frame() -> None:
    frame = pl.DataFrame({"date": ["2024-01-02", "2024-01-03"], "symbol": ["A", None], "open": [1.0, 1.0],
                          "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0], "volume": [1.0, 1.0]})
    err = _fail(frame)
    assert err.row == 1 and "symbol is missing" in err.problem


def test_utc_offset_dates_are_rejected_with_advice(make_csv_dir) -> None:
    lines = ["2024-01-02 14:30:00+00:00,10.0,11.0,9.5,10.5,1000"]
    err = _fail(make_csv_dir({"AAA": lines}))
    assert "no UTC offset" in err.problem and err.row == 1


# -- issue 9, defect 5: messages that misled ----------------------------------------


def test_parquet_without_needed_columns_reports_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    pl.DataFrame({"ts": ["2024-01-02"], "px": [1.0]}).write_parquet(path)
    err = _fail(path)
    assert err.file == str(path)
    assert "missing columns: date, symbol, open, high, low, close, volume" in err.problem
    assert "found: ts, px" in err.problem and "empty input" not in err.problem


def test_semicolon_csv_reports_missing_columns_and_the_separator(make_csv_dir) -> None:
    directory = make_csv_dir({"AAA": ["2024-01-02;10.0;11.0;9.5;10.5;1000"]},
                             header="date;open;high;low;close;volume")
    err = _fail(directory)
    assert err.file == str(directory / "AAA.csv")
    assert "missing columns: date, open, high, low, close, volume" in err.problem
    assert "separated by ';'" in err.problem and "empty input" not in err.problem


def test_frame_without_needed_columns_reports_missing_columns() -> None:
    err = _fail(pl.DataFrame({"ts": ["2024-01-02"], "px": [1.0]}))
    assert "missing columns" in err.problem and "found: ts, px" in err.problem


@pytest.mark.parametrize("stem", [" ", "   ", "\t"])
def test_blank_csv_file_name_is_refused(make_csv_dir, stem: str, bundle_root: Path) -> None:
    directory = make_csv_dir({"AAA": GOOD, stem: GOOD})
    err = _fail(directory)
    assert err.file == str(directory / f"{stem}.csv") and "blank symbol" in err.problem
    assert not (bundle_root / "bad").exists()


@pytest.mark.parametrize("blank", ["", "  ", "\t "])
def test_blank_symbol_in_frame_is_refused_with_its_row(blank: str) -> None:
    frame = pl.DataFrame({"date": ["2024-01-02", "2024-01-03", "2024-01-02"], "symbol": ["A", "A", blank],
                          "open": [1.0] * 3, "high": [1.0] * 3, "low": [1.0] * 3, "close": [1.0] * 3,
                          "volume": [1.0] * 3})
    err = _fail(frame)
    assert err.row == 2 and "blank" in err.problem and err.file is None
    info = ingest_bundle("lenient", frame, lenient=True)
    assert info.symbols == ("A",) and [d.row for d in info.dropped] == [2]


def test_blank_symbol_in_pandas_frame_is_refused() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"date": ["2024-01-02"], "symbol": ["   "], "open": [1.0], "high": [1.0],
                          "low": [1.0], "close": [1.0], "volume": [1.0]})
    err = _fail(frame)
    assert err.row == 0 and "blank" in err.problem


def test_blank_symbol_column_in_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.parquet"
    pl.DataFrame({"date": ["2024-01-02", "2024-01-03"], "symbol": ["A", " "], "open": [1.0, 1.0],
                  "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0], "volume": [1.0, 1.0]}).write_parquet(path)
    err = _fail(path)
    assert err.file == str(path) and err.row == 2 and "blank" in err.problem
