"""Readers that turn a CSV directory, Parquet files or a DataFrame into raw pieces.

A reader only reads: it lower-cases the header, keeps the OHLCV columns and
remembers where every row came from. Parsing, checking and sorting are the job
of :mod:`rustybt_ray.data.validation`, so every source gets the same checks and
the same error messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

from rustybt_ray.errors import BundleError, BundleValidationError

#: Columns every source must provide (a CSV directory takes ``symbol`` from file names).
LONG_COLUMNS: tuple[str, ...] = ("date", "symbol", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")

_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")

#: What ``ingest_bundle`` accepts as a source.
Source = Union[str, "os.PathLike[str]", pl.DataFrame, pl.LazyFrame, "pd.DataFrame"]


@dataclass(frozen=True)
class RawPiece:
    """Rows from one file (or one in-memory frame), not yet parsed.

    Attributes:
        label: the file path shown in error messages, or ``None`` for a DataFrame.
        frame: the rows with lower-cased column names, values as read (strings for CSV).
        symbol: the symbol for every row (a CSV file's stem), or ``None`` to use the
            frame's ``symbol`` column.
        row_base: number added to a 0-based position to get the row shown to users:
            1 for files (1-based data rows, header excluded), 0 for DataFrames.
        found: the column names as the source had them, before unused ones were
            dropped, so that a file with none of the needed columns (``ts, px``, or a
            ``;``-separated CSV read as one column) is reported as missing columns,
            not as empty input.
    """

    label: str | None
    frame: pl.DataFrame
    symbol: str | None
    row_base: int
    found: tuple[str, ...] = ()


def read_source(source: Source) -> list[RawPiece]:
    """Read any supported source into raw pieces.

    ``source`` is a directory of ``SYMBOL.csv`` (or ``.csv.gz``) files, a long-format
    Parquet file, a directory of Parquet files, or a polars/pandas DataFrame in long
    format (``date, symbol, open, high, low, close, volume``).
    """
    if isinstance(source, (pl.DataFrame, pl.LazyFrame)):
        return [read_frame(source)]
    if _is_pandas_frame(source):
        return [read_frame(source)]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        try:
            return _read_path(path)
        except OSError as exc:  # a name too long, no permission: the source cannot be read
            raise BundleError(f"cannot read source {path}: {exc.strerror or exc}") from None
    raise BundleError(
        f"cannot ingest a {type(source).__name__}; pass a CSV directory, a Parquet file or directory, "
        "or a polars/pandas DataFrame"
    )


def _read_path(path: Path) -> list[RawPiece]:
    if path.is_dir():
        if _files(path, _CSV_SUFFIXES):
            return read_csv_dir(path)
        if _files(path, _PARQUET_SUFFIXES):
            return read_parquet(path)
        raise BundleValidationError(
            "empty input: the directory has no SYMBOL.csv, SYMBOL.csv.gz or .parquet files",
            file=str(path),
        )
    if path.is_file():
        if path.name.lower().endswith(_PARQUET_SUFFIXES):
            return read_parquet(path)
        if path.name.lower().endswith(_CSV_SUFFIXES):
            raise BundleError(
                f"{path} is a single CSV file; put SYMBOL.csv files in a directory and ingest "
                "the directory (the symbol comes from each file name)"
            )
        raise BundleError(f"{path}: cannot tell the format; expected a .parquet file or a directory")
    raise BundleError(f"source {str(path)!r} does not exist")


def read_csv_dir(path: str | os.PathLike[str]) -> list[RawPiece]:
    """One piece per ``SYMBOL.csv`` file of a directory, every column read as text.

    Reading text (not inferred types) lets validation name the exact row and column
    of a value that is not a number or a date, instead of failing inside the reader.
    """
    directory = Path(path)
    files = _files(directory, _CSV_SUFFIXES)
    if not files:
        raise BundleValidationError("empty input: the directory has no SYMBOL.csv files", file=str(directory))
    pieces = []
    for file in files:
        symbol = _stem(file).strip()
        if not symbol:
            raise BundleValidationError(
                "the file name gives a blank symbol; name each file SYMBOL.csv, e.g. AAPL.csv", file=str(file)
            )
        try:
            frame = pl.read_csv(file, infer_schema=False, truncate_ragged_lines=False)
        except pl.exceptions.NoDataError:
            frame = pl.DataFrame()
        except pl.exceptions.ComputeError as exc:
            raise BundleValidationError(f"cannot parse CSV: {_first_line(exc)}", file=str(file)) from exc
        except OSError as exc:
            raise BundleValidationError(f"cannot read CSV: {exc.strerror or exc}", file=str(file)) from None
        pieces.append(RawPiece(str(file), _lower_columns(frame, str(file)), symbol, 1, _found(frame)))
    return pieces


def read_parquet(path: str | os.PathLike[str]) -> list[RawPiece]:
    """One piece per long-format Parquet file (a file, or every ``.parquet`` file of a directory)."""
    target = Path(path)
    files = _files(target, _PARQUET_SUFFIXES) if target.is_dir() else [target]
    if not files:
        raise BundleValidationError("empty input: the directory has no .parquet files", file=str(target))
    pieces = []
    for file in files:
        try:
            frame = pl.read_parquet(file)
        except (pl.exceptions.ComputeError, OSError) as exc:
            raise BundleValidationError(f"cannot read Parquet: {_first_line(exc)}", file=str(file)) from exc
        pieces.append(RawPiece(str(file), _lower_columns(frame, str(file)), None, 1, _found(frame)))
    return pieces


def read_frame(frame: Any) -> RawPiece:
    """A piece from a polars (eager or lazy) or pandas DataFrame in long format.

    A pandas frame whose ``date`` or ``symbol`` is in the index (e.g. after
    ``set_index``) is reset first, so the index becomes columns.
    """
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    elif _is_pandas_frame(frame):
        names = [n for n in frame.index.names if n is not None]
        if names:
            frame = frame.reset_index()
        frame = pl.from_pandas(frame)
    return RawPiece(None, _lower_columns(frame, None), None, 0, _found(frame))


def _is_pandas_frame(obj: Any) -> bool:
    # Checked by name so that reading polars sources never imports pandas.
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def _files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes)
    )


def _stem(file: Path) -> str:
    name = file.name
    for suffix in sorted(_CSV_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return file.stem


def _found(frame: pl.DataFrame) -> tuple[str, ...]:
    return tuple(str(c) for c in frame.columns)


def _lower_columns(frame: pl.DataFrame, label: str | None) -> pl.DataFrame:
    names = [str(c).strip().lower() for c in frame.columns]
    seen: set[str] = set()
    for original, name in zip(frame.columns, names, strict=True):
        if name in seen and name in LONG_COLUMNS:
            raise BundleValidationError(
                f"column {name!r} appears twice (header is case-insensitive: {original!r}); keep one",
                file=label,
            )
        seen.add(name)
    # Columns we do not use may collide after lower-casing; drop them before renaming.
    keep = [c for c, n in zip(frame.columns, names, strict=True) if n in LONG_COLUMNS]
    return frame.select(keep).rename({c: str(c).strip().lower() for c in keep})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
