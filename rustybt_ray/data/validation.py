"""Parse and check raw pieces into one clean, sorted long frame.

All checks are polars expressions over the whole input at once: every row gets
the first problem it has (or null), so finding the first bad row and dropping
all of them in lenient mode are the same vectorized pass.

Structural problems (missing columns, a column of the wrong kind, empty input,
mixed or irregular bar frequency) always raise. Row problems (unparseable
values, NaN, non-positive prices, negative volume, inconsistent OHLC, duplicate
bars) raise on the first bad row by default, or with ``lenient=True`` drop the
bad rows and are reported as :class:`DroppedRow` s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import polars as pl

from rustybt_ray.data.frequency import check_frequency
from rustybt_ray.data.ingest import LONG_COLUMNS, PRICE_COLUMNS, VALUE_COLUMNS, RawPiece
from rustybt_ray.errors import BundleValidationError

#: Relative slack for the OHLC range checks: adjusted prices are computed in floating
#: point (price times an adjustment factor), so high and close can differ in the last bit.
OHLC_RELATIVE_TOLERANCE = 1e-9

#: Text date formats tried in order; the first that parses a value wins.
DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y%m%d",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
)

_FILE, _ROW, _PROBLEM, _POS = "_file", "_row", "_problem", "_pos"
_PARSED_DATE = "_date_parsed"
_TS = pl.Datetime("ns")


class DroppedRow(NamedTuple):
    """A row that lenient ingest dropped: where it was and what was wrong with it."""

    file: str | None
    symbol: str | None
    row: int
    problem: str


@dataclass(frozen=True)
class ValidatedFrame:
    """The outcome of validation.

    Attributes:
        frame: ``date, symbol, open, high, low, close, volume`` with ``date`` as
            ``Datetime("ns")`` and values as ``Float64``, sorted by symbol then date.
        frequency: the bar frequency code.
        dropped: rows dropped in lenient mode (empty otherwise), in input order.
    """

    frame: pl.DataFrame
    frequency: str
    dropped: tuple[DroppedRow, ...]


def validate(pieces: list[RawPiece], *, frequency: str | None = None, lenient: bool = False) -> ValidatedFrame:
    """Parse, check and sort raw pieces (see the module docs for what is checked).

    Raises:
        BundleValidationError: naming the file, symbol, row and problem.
    """
    # A piece with no columns at all (an empty file) is empty input; one whose columns
    # are all unknown is reported by _locate as missing columns.
    located = [_locate(p) for p in pieces if p.frame.width or p.frame.height or p.found]
    typed = [_parse_run(run, label) for run, label in _runs_of_same_schema(located)]
    if not typed or sum(t.height for t in typed) == 0:
        label = pieces[0].label if len(pieces) == 1 else None
        raise BundleValidationError("empty input: there are no rows to ingest", file=label)
    frame = _flag_row_problems(pl.concat(typed, how="vertical").with_row_index(_POS))
    good, bad = _split_off_duplicates(frame)
    dropped: tuple[DroppedRow, ...] = ()
    if bad.height:
        if not lenient:
            first = bad.row(0, named=True)
            more = bad.height - 1
            tail = f" ({more} more bad rows; pass lenient=True to drop bad rows and get a report)" if more else ""
            raise BundleValidationError(
                first[_PROBLEM] + tail, file=first[_FILE], symbol=first["symbol"], row=first[_ROW]
            )
        dropped = tuple(
            DroppedRow(*r) for r in bad.select(_FILE, "symbol", _ROW, _PROBLEM).iter_rows()
        )
        if good.height == 0:
            raise BundleValidationError(f"empty input: all {bad.height} rows have problems, e.g. {dropped[0]}")
    frame = good.select(LONG_COLUMNS)
    freq = check_frequency(frame, frequency)
    return ValidatedFrame(frame, freq, dropped)


# -- parsing ------------------------------------------------------------------------


def _locate(piece: RawPiece) -> tuple[pl.DataFrame, str | None]:
    """The piece's long columns plus ``_file`` and ``_row``; raises on missing columns."""
    frame = piece.frame
    required = [c for c in LONG_COLUMNS if not (c == "symbol" and piece.symbol is not None)]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        columns = piece.found or tuple(frame.columns)
        found = ", ".join(columns) or "none"
        raise BundleValidationError(
            f"missing columns: {', '.join(missing)} (found: {found}); "
            f"a bundle needs {', '.join(required)} (header names are case-insensitive)"
            f"{_separator_hint(columns)}",
            file=piece.label,
        )
    symbol = pl.lit(piece.symbol, dtype=pl.String) if piece.symbol is not None else pl.col("symbol")
    located = frame.select(
        pl.lit(piece.label, dtype=pl.String).alias(_FILE),
        (pl.int_range(pl.len(), dtype=pl.Int64) + piece.row_base).alias(_ROW),
        pl.col("date"),
        symbol.alias("symbol"),
        *VALUE_COLUMNS,
    )
    return located, piece.label


def _separator_hint(columns: tuple[str, ...]) -> str:
    """Advice when a CSV header read as one column looks split by another separator."""
    if len(columns) != 1:
        return ""
    for sep, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if sep in columns[0]:
            return f"; the header looks separated by {name}: files must be comma-separated"
    return ""


def _runs_of_same_schema(
    located: list[tuple[pl.DataFrame, str | None]],
) -> list[tuple[pl.DataFrame, str | None]]:
    """Concatenate consecutive pieces with identical schemas (labelled by the first).

    Parsing costs a fixed overhead per call, so 500 CSV files (all text) are parsed
    as one frame; only consecutive pieces merge, which keeps the input row order.
    """
    runs: list[tuple[list[pl.DataFrame], str | None]] = []
    for frame, label in located:
        if runs and runs[-1][0][0].schema == frame.schema:
            runs[-1][0].append(frame)
        else:
            runs.append(([frame], label))
    return [(pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0], label) for frames, label in runs]


def _parse_run(frame: pl.DataFrame, label: str | None) -> pl.DataFrame:
    """Typed columns plus ``_file``, ``_row`` and ``_problem`` (a parse problem or null).

    ``label`` names the (first) file in errors about a column's type.
    """
    problems: list[pl.Expr] = []
    # Text columns are parsed eagerly with fast paths (see the helpers); the
    # expressions below only pick the parsed columns and describe failures.
    if frame.schema["date"] == pl.String:
        frame = frame.with_columns(_parse_date_text(frame["date"]).alias(_PARSED_DATE))
    text_numbers = [n for n in VALUE_COLUMNS if frame.schema[n] == pl.String]
    if text_numbers:
        frame = frame.with_columns(_parse_number_text(frame[n]).alias(f"_parsed_{n}") for n in text_numbers)
    date, date_problem = _parse_dates(frame, label)
    problems.append(date_problem)
    symbol, symbol_problem = _parse_symbols(frame, label)
    problems.append(symbol_problem)
    values = []
    for name in VALUE_COLUMNS:
        value, problem = _parse_number(frame, name, label)
        values.append(value.alias(name))
        problems.append(problem)
    typed = frame.select(_FILE, _ROW, date.alias("date"), symbol.alias("symbol"), *values)
    # A value that failed to parse is null in ``typed``; only those rows need a message,
    # so the (costly) message formatting runs on the few bad rows, not on all of them.
    flagged = pl.any_horizontal(pl.col("date", "symbol", *VALUE_COLUMNS).is_null())
    bad_rows = typed.select(pl.arg_where(flagged))[:, 0] if typed.height else pl.Series([], dtype=pl.UInt32)
    if bad_rows.len() == 0:
        return typed.with_columns(pl.lit(None, dtype=pl.String).alias(_PROBLEM))
    messages = frame[bad_rows].select(pl.coalesce(problems).alias(_PROBLEM))
    message_at = pl.Series(_PROBLEM, [None] * typed.height, dtype=pl.String).scatter(bad_rows, messages[_PROBLEM])
    return typed.with_columns(message_at)


def _parse_dates(frame: pl.DataFrame, label: str | None) -> tuple[pl.Expr, pl.Expr]:
    col = pl.col("date")
    dtype = frame.schema["date"]
    if dtype == pl.String:
        text = col.str.strip_chars()
        parsed = pl.col(_PARSED_DATE)  # parsed once by _parse_date_text
        problem = (
            pl.when(text.is_null() | (text == ""))
            .then(pl.lit("date is missing"))
            .when(parsed.is_null())
            .then(
                pl.format(
                    "cannot parse date '{}'; use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS "
                    "(naive exchange-local time, no UTC offset)",
                    text,
                )
            )
        )
        return parsed, problem
    if dtype == pl.Date:
        return col.cast(_TS), _missing(col, "date")
    if isinstance(dtype, pl.Datetime):
        # A zone-aware column keeps its wall-clock time: bars are stamped in exchange time.
        if dtype.time_zone is not None:
            col = col.dt.replace_time_zone(None)
        return col.cast(_TS), _missing(pl.col("date"), "date")
    raise BundleValidationError(
        f"column 'date' has type {dtype}; expected dates, datetimes or text like 2024-01-31 or 2024-01-31 09:30:00",
        file=label,
    )


def _parse_date_text(text: pl.Series) -> pl.Series:
    """Parse text timestamps with the first of :data:`DATE_FORMATS` that fits each value.

    Formats are tried in order on the values still unparsed and the search stops as
    soon as none is left, so the usual single-format column costs a single parse.
    """
    text = text.str.strip_chars()
    parsed = text.str.strptime(_TS, DATE_FORMATS[0], strict=False, exact=True)
    for fmt in DATE_FORMATS[1:]:
        todo = parsed.is_null() & text.is_not_null() & (text != "")
        if not todo.any():
            break
        idx = todo.arg_true()
        attempt = text.gather(idx).str.strptime(_TS, fmt, strict=False, exact=True)
        parsed = parsed.scatter(idx, attempt)
    return parsed


def _parse_symbols(frame: pl.DataFrame, label: str | None) -> tuple[pl.Expr, pl.Expr]:
    dtype = frame.schema["symbol"]
    if not (dtype == pl.String or dtype == pl.Categorical or isinstance(dtype, pl.Enum) or dtype.is_integer()):
        raise BundleValidationError(f"column 'symbol' has type {dtype}; expected text", file=label)
    stripped = pl.col("symbol").cast(pl.String).str.strip_chars()
    # A blank symbol becomes null, so that the row is flagged like any value that failed to parse.
    symbol = pl.when(stripped == "").then(pl.lit(None, dtype=pl.String)).otherwise(stripped)
    problem = (
        pl.when(stripped.is_null())
        .then(pl.lit("symbol is missing"))
        .when(stripped == "")
        .then(pl.format("symbol '{}' is blank", pl.col("symbol").cast(pl.String)))
    )
    return symbol, problem


def _parse_number(frame: pl.DataFrame, name: str, label: str | None) -> tuple[pl.Expr, pl.Expr]:
    col = pl.col(name)
    dtype = frame.schema[name]
    if dtype == pl.String:
        text = col.str.strip_chars()
        parsed = pl.col(f"_parsed_{name}")  # parsed once by _parse_number_text
        problem = (
            pl.when(text.is_null() | (text == ""))
            .then(pl.lit(f"{name} is missing"))
            .when(parsed.is_null())
            .then(pl.format(f"{name} '{{}}' is not a number", text))
        )
        return parsed, problem
    if dtype.is_numeric() or dtype == pl.Null:
        return col.cast(pl.Float64), _missing(col, name)
    raise BundleValidationError(
        f"column {name!r} is not numeric (type {dtype}); convert it to numbers first", file=label
    )


def _parse_number_text(text: pl.Series) -> pl.Series:
    """Text to float; values padded with spaces take a second, stripped try.

    Stripping every value first would double the cost for the clean common case.
    """
    parsed = text.cast(pl.Float64, strict=False)
    todo = parsed.is_null() & text.is_not_null()
    if todo.any():
        idx = todo.arg_true()
        parsed = parsed.scatter(idx, text.gather(idx).str.strip_chars().cast(pl.Float64, strict=False))
    return parsed


def _missing(col: pl.Expr, name: str) -> pl.Expr:
    return pl.when(col.is_null()).then(pl.lit(f"{name} is missing"))


# -- row checks ---------------------------------------------------------------------


def _row_checks() -> list[tuple[pl.Expr, pl.Expr]]:
    """(condition, message) per row check, in the order a row's first problem is picked."""
    tol = OHLC_RELATIVE_TOLERANCE
    high, low = pl.col("high"), pl.col("low")
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    for name in VALUE_COLUMNS:
        checks.append((pl.col(name).is_nan(), pl.lit(f"{name} is NaN")))
    for name in VALUE_COLUMNS:
        checks.append((pl.col(name).is_infinite(), pl.format(f"{name} is {{}}", pl.col(name))))
    for name in PRICE_COLUMNS:
        checks.append((pl.col(name) <= 0, pl.format(f"{name} {{}} is not positive; prices must be > 0", pl.col(name))))
    checks.append((pl.col("volume") < 0, pl.format("volume {} is negative", pl.col("volume"))))
    checks.append((high < low - tol * low.abs(), pl.format("high {} is below low {}", high, low)))
    for name in ("open", "close"):
        value = pl.col(name)
        outside = (value > high + tol * high.abs()) | (value < low - tol * low.abs())
        checks.append((outside, pl.format(f"{name} {{}} is outside [low {{}}, high {{}}]", value, low, high)))
    return checks


def _flag_row_problems(frame: pl.DataFrame) -> pl.DataFrame:
    """Set ``_problem`` to each row's first problem; parse problems come first."""
    checks = _row_checks()
    parsed_ok = pl.col(_PROBLEM).is_null()
    # Pass 1 over all rows: cheap booleans. Pass 2 over the bad rows only: messages.
    bad_rows = frame.select(pl.arg_where(parsed_ok & pl.any_horizontal([c for c, _ in checks])))[:, 0]
    if bad_rows.len():
        chain: Any = pl.when(checks[0][0]).then(checks[0][1])
        for condition, message in checks[1:]:
            chain = chain.when(condition).then(message)
        messages = frame[bad_rows].select(chain.alias(_PROBLEM))[_PROBLEM]
        frame = frame.with_columns(frame[_PROBLEM].scatter(bad_rows, messages))
    return frame


def _split_off_duplicates(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(good rows sorted by symbol then date, bad rows in input order).

    Good rows are sorted first (ties in input order), so copies of a (symbol, date)
    sit next to each other and each later copy is flagged against the first. Rows
    with other problems do not count, so in lenient mode a good bar survives next
    to a broken copy of itself.
    """
    broken = frame.filter(pl.col(_PROBLEM).is_not_null())
    ok = frame.filter(pl.col(_PROBLEM).is_null()).sort("symbol", "date", _POS)
    same = (pl.col("symbol") == pl.col("symbol").shift()) & (pl.col("date") == pl.col("date").shift())
    ok = ok.with_columns(same.fill_null(False).alias("_dup"))
    if not ok["_dup"].any():
        return ok.drop("_dup"), broken
    first_file = pl.when(~pl.col("_dup")).then(pl.col(_FILE)).forward_fill()
    first_row = pl.when(~pl.col("_dup")).then(pl.col(_ROW)).forward_fill()
    ok = ok.with_columns(first_file.alias("_ffile"), first_row.alias("_frow"))
    where = pl.when(pl.col("_ffile").is_not_null()).then(pl.format("file {}, ", pl.col("_ffile"))).otherwise(pl.lit(""))
    dups = ok.filter("_dup").with_columns(
        pl.format(
            "duplicate bar for {} at {}; first seen at {}row {}",
            pl.col("symbol"),
            pl.col("date").dt.to_string("%Y-%m-%d %H:%M:%S"),
            where,
            pl.col("_frow"),
        ).alias(_PROBLEM)
    )
    extra = ["_dup", "_ffile", "_frow"]
    good = ok.filter(~pl.col("_dup")).drop(extra)
    bad = pl.concat([broken, dups.drop(extra)]).sort(_POS)
    return good, bad
