"""Bar-frequency codes and their inference from timestamps.

A frequency code is ``"1d"`` (one bar per session) or an intraday bar length in
whole minutes or hours: ``"1m"``, ``"5m"``, ``"15m"``, ``"30m"``, ``"1h"``, ``"2h"``...
Intraday lengths are inferred from the most common positive gap between
consecutive bars of the same symbol on the same day, so overnight and weekend
gaps, early closes and sparse extended-hours minutes do not confuse it.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from rustybt_ray.errors import BundleValidationError

_CODE = re.compile(r"^([1-9][0-9]*)([mhd])$")
_NS_PER_MINUTE = 60 * 1_000_000_000
_NS_PER_HOUR = 60 * _NS_PER_MINUTE
_NS_PER_DAY = 24 * _NS_PER_HOUR

#: The longest "most common gap" between daily bars that still reads as daily data.
#: Trading days are mostly 1 calendar day apart (a sparse symbol's may be a long
#: weekend, 4); weekly data is 7 apart.
_MAX_DAILY_MODE_DAYS = 4


def session_index(calendar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions of an ascending bar calendar: ``(session_id, starts, days)``.

    A session is a calendar day of the bar timestamps (the bundle's own sessions, see
    ``Bundle.sessions``): ``session_id[t]`` numbers bar ``t``'s session from 0,
    ``starts[s]`` is the first bar of session ``s`` and ``days[s]`` its date
    (``datetime64[D]``). The calendar is sorted, so this is one pass, not a sort.
    """
    days = np.asarray(calendar).astype("datetime64[D]")
    if days.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), days
    new = np.empty(days.shape[0], dtype=bool)
    new[0] = True
    np.not_equal(days[1:], days[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    session_id = np.cumsum(new, dtype=np.int64) - 1
    return session_id, starts, days[starts]


def normalize_frequency(code: str) -> str:
    """The canonical code for ``code`` (``"60m"`` becomes ``"1h"``); raises on a malformed one."""
    m = _CODE.match(code.strip().lower()) if isinstance(code, str) else None
    if m is None or (m.group(2) == "d" and m.group(1) != "1"):
        raise BundleValidationError(
            f"frequency {code!r} is not a bar frequency; use '1d' for daily bars or an intraday "
            "length in minutes or hours such as '1m', '5m', '15m', '30m', '1h'"
        )
    n, unit = int(m.group(1)), m.group(2)
    return "1d" if unit == "d" else code_for_gap(n * (_NS_PER_HOUR if unit == "h" else _NS_PER_MINUTE))


def code_for_gap(gap_ns: int) -> str:
    """The intraday code for a bar length in nanoseconds (whole hours as ``h``, else ``m``)."""
    if gap_ns % _NS_PER_HOUR == 0:
        return f"{gap_ns // _NS_PER_HOUR}h"
    return f"{gap_ns // _NS_PER_MINUTE}m"


def _describe_gap(gap_ns: int) -> str:
    if gap_ns % _NS_PER_MINUTE == 0:
        return code_for_gap(gap_ns)
    return f"{gap_ns / 1e9:g}s"


def infer_frequency(frame: pl.DataFrame) -> str:
    """Infer the bar frequency of a validated long frame (``date`` as ``Datetime``, ``symbol``).

    Every symbol must have the same frequency; a symbol with too few bars to tell
    takes the others'. Raises :class:`BundleValidationError` on mixed frequencies
    or on intraday gaps that are not whole minutes or not multiples of the bar length.
    """
    per_symbol = _per_symbol_frequency(frame)
    known = {sym: code for sym, code in per_symbol.items() if code is not None}
    codes = sorted(set(known.values()), key=lambda c: (c != "1d", c))
    if len(codes) > 1:
        examples = ", ".join(f"{next(s for s, c in known.items() if c == code)} is {code}" for code in codes)
        raise BundleValidationError(
            f"mixed bar frequency: {examples}; a bundle holds one frequency, so ingest them as separate bundles"
        )
    return codes[0] if codes else "1d"


def check_frequency(frame: pl.DataFrame, requested: str | None) -> str:
    """The frame's frequency: inferred, and equal to ``requested`` when one is given."""
    inferred = infer_frequency(frame)
    if requested is None:
        return inferred
    wanted = normalize_frequency(requested)
    if wanted != inferred:
        raise BundleValidationError(
            f"frequency={requested!r} was given but the data has {inferred} bars "
            f"(inferred from the most common gap between bars of the same day); "
            f"pass frequency={inferred!r} or leave it out"
        )
    return wanted


def _per_symbol_frequency(frame: pl.DataFrame) -> dict[str, str | None]:
    """Each symbol's code, or ``None`` when it has too few bars per day to tell."""
    sym = pl.col("symbol")
    ns = pl.col("date").cast(pl.Datetime("ns")).to_physical()
    # Integer day numbers (floor division also floors dates before 1970) are much
    # cheaper than calendar dates. Sorted by symbol then date, a row's predecessor is
    # the previous row: comparing with shift() beats a window over (symbol, day).
    rows = (
        frame.select(sym, ns.alias("_ns"))
        .sort("symbol", "_ns")
        .with_columns((pl.col("_ns") // _NS_PER_DAY).alias("_day"))
    )
    same_symbol = sym == sym.shift()
    same_day = pl.col("_day") == pl.col("_day").shift()
    lazy = rows.with_columns(
        _gap=pl.when(same_symbol & same_day).then(pl.col("_ns") - pl.col("_ns").shift()),
        _day_gap=pl.when(same_symbol & ~same_day).then(pl.col("_day") - pl.col("_day").shift()),
    ).lazy()
    stats = lazy.group_by("symbol").agg(
        _midnight=(pl.col("_ns") % _NS_PER_DAY == 0).all(),
        _intraday=pl.col("_gap").is_not_null().any(),
    )
    gap_mode = _mode(lazy, "_gap")
    day_mode = _mode(lazy, "_day_gap")
    table = (
        stats.join(gap_mode, on="symbol", how="left")
        .join(day_mode, on="symbol", how="left")
        .sort("symbol")
        .collect()
    )
    odd = (
        lazy.filter(pl.col("_gap").is_not_null())
        .join(gap_mode, on="symbol")
        .filter(pl.col("_gap") % pl.col("_gap_mode") != 0)
        .group_by("symbol")
        .agg(pl.len().alias("n"), pl.col("_gap").first().alias("example"))
        .collect()
    )
    odd_by_symbol = {r["symbol"]: r for r in odd.iter_rows(named=True)}
    out: dict[str, str | None] = {}
    for row in table.iter_rows(named=True):
        symbol = row["symbol"]
        if not row["_intraday"]:
            # One bar per day is daily data. Stamped at midnight it surely is; stamped
            # with a time it may also be a sparse intraday symbol, so let others decide.
            day_gap = row["_day_gap_mode"]
            if day_gap is not None and day_gap > _MAX_DAILY_MODE_DAYS:
                raise BundleValidationError(
                    f"unsupported bar frequency: bars are mostly {day_gap} days apart; "
                    "bundles hold daily ('1d') or intraday bars, so resample to daily first",
                    symbol=symbol,
                )
            out[symbol] = "1d" if row["_midnight"] else None
            continue
        out[symbol] = _intraday_code(symbol, int(row["_gap_mode"]), odd_by_symbol.get(symbol))
    return out


def _mode(rows: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """Per symbol, the most common non-null value of ``column`` (the smallest on ties)."""
    return (
        rows.filter(pl.col(column).is_not_null() & (pl.col(column) > 0))
        .group_by("symbol", column)
        .len()
        .sort("symbol", "len", column, descending=[False, True, False])
        .group_by("symbol", maintain_order=True)
        .first()
        .select("symbol", pl.col(column).alias(f"{column}_mode"))
    )


def _intraday_code(symbol: str, bar_ns: int, odd: dict[str, int] | None) -> str:
    if bar_ns % _NS_PER_MINUTE != 0:
        raise BundleValidationError(
            f"irregular bar frequency: the most common gap between bars is {_describe_gap(bar_ns)}, "
            "not a whole number of minutes; resample to a regular frequency such as '1m' or '5m'",
            symbol=symbol,
        )
    if odd is not None:
        raise BundleValidationError(
            f"irregular bar frequency: most bars are {code_for_gap(bar_ns)} apart but {odd['n']} gaps "
            f"within a day are not a multiple of that (e.g. {_describe_gap(int(odd['example']))}); "
            "resample to a regular frequency",
            symbol=symbol,
        )
    return code_for_gap(bar_ns)
