"""The in-memory market-data bundle: a calendar, an asset table and dense arrays.

Every field is a bar-major ``(T, N)`` float64 array (``T`` bars of the calendar,
``N`` assets), NaN where an asset has no bar. All fields live in one contiguous
``(F, T, N)`` block so the bundle pickles as one buffer: ``ray.put`` stores it
once and every worker on a node maps it zero-copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from rustybt_ray.errors import BundleValidationError, SymbolNotFoundError

#: Fields stored in every bundle, in block order. ``price`` is ``close`` forward-filled
#: per asset (zipline's meaning): what a position is worth on a bar it did not trade.
FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "price")
OHLCV: tuple[str, ...] = FIELDS[:5]
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}


class Asset(int):
    """A tradable asset: an ``int`` (its column in the bundle) that knows its symbol.

    Subclassing ``int`` keeps hashing and equality in C (hot-loop dictionary keys)
    and lets an asset index arrays directly: ``bundle.close[t, asset]``. As in
    zipline, an asset compares equal to its integer ``sid``.
    """

    symbol: str
    start_date: np.datetime64
    end_date: np.datetime64

    def __new__(
        cls,
        sid: int,
        symbol: str,
        start_date: np.datetime64 | None = None,
        end_date: np.datetime64 | None = None,
    ) -> Asset:
        obj = super().__new__(cls, sid)
        obj.symbol = symbol
        obj.start_date = start_date if start_date is not None else np.datetime64("NaT")
        obj.end_date = end_date if end_date is not None else np.datetime64("NaT")
        return obj

    @property
    def sid(self) -> int:
        """The asset's integer id, which is also its column in the bundle arrays."""
        return int(self)

    def __repr__(self) -> str:
        return f"Asset({int(self)} [{self.symbol}])"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Asset, (int(self), self.symbol, self.start_date, self.end_date))


#: Bars per year used to annualise metrics, by frequency.
_SESSIONS_PER_YEAR = 252


@dataclass(frozen=True)
class BarFrequency:
    """A bar frequency such as ``1d``, ``1h`` or ``5m``."""

    code: str

    @property
    def is_daily(self) -> bool:
        """Whether bars are whole sessions (one bar per trading day)."""
        return self.code == "1d"

    @property
    def nanoseconds(self) -> int:
        """Nominal bar length in nanoseconds."""
        unit = self.code[-1]
        n = int(self.code[:-1])
        scale = {"m": 60, "h": 3600, "d": 86400}[unit]
        return n * scale * 1_000_000_000


class Bundle:
    """OHLCV bars for a set of assets on one calendar, as dense read-only arrays.

    Attributes:
        name: the bundle's registered name (or a descriptive label).
        frequency: bar frequency code (``"1d"``, ``"1h"``, ``"1m"``, ...).
        calendar: ``datetime64[ns]`` bar timestamps, ascending, the union over assets.
        assets: one :class:`Asset` per column, ordered by symbol.
        version: a content hash (SHA-256 hex) identifying this exact data.
        values: the ``(F, T, N)`` float64 block; ``values[FIELD_INDEX[f]]`` is field ``f``.
    """

    __slots__ = ("name", "frequency", "calendar", "assets", "version", "values", "_by_symbol", "_sessions")

    def __init__(
        self,
        name: str,
        frequency: str,
        calendar: np.ndarray,
        symbols: Sequence[str],
        values: np.ndarray,
        version: str | None = None,
    ) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 3 or values.shape[0] not in (len(OHLCV), len(FIELDS)):
            raise BundleValidationError(f"bundle block must be (5 or 6, T, N), got shape {values.shape}")
        if values.shape[0] == len(OHLCV):
            values = np.concatenate([values, _ffill(values[FIELD_INDEX["close"]])[None]], axis=0)
        calendar = np.asarray(calendar).astype("datetime64[ns]")
        if calendar.shape[0] != values.shape[1] or len(symbols) != values.shape[2]:
            raise BundleValidationError(
                f"calendar ({calendar.shape[0]} bars) and symbols ({len(symbols)}) do not match block {values.shape}"
            )
        if calendar.shape[0] > 1 and not np.all(calendar[1:] > calendar[:-1]):
            raise BundleValidationError("bundle calendar must be strictly ascending")
        values = np.ascontiguousarray(values)
        values.flags.writeable = False
        calendar.flags.writeable = False
        self.name = name
        self.frequency = frequency
        self.calendar = calendar
        self.values = values
        self.version = version if version is not None else _content_hash(calendar, symbols, values)
        has_bar = ~np.isnan(values[FIELD_INDEX["close"]])
        self.assets: tuple[Asset, ...] = tuple(
            _make_asset(i, str(sym), calendar, has_bar[:, i]) for i, sym in enumerate(symbols)
        )
        self._by_symbol = {a.symbol: a for a in self.assets}
        self._sessions: np.ndarray | None = None

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_long_frame(cls, frame: pl.DataFrame, name: str, frequency: str, version: str | None = None) -> Bundle:
        """Build a bundle from a validated long frame ``date, symbol, open, high, low, close, volume``.

        The frame must already be validated (no duplicates, numeric columns); rows may
        be in any order. Missing (date, symbol) pairs become NaN.
        """
        dates = frame["date"].cast(pl.Datetime("ns")).to_numpy()
        calendar = np.unique(dates)
        # Column of each row without a Python loop: the dense rank of the symbol is its
        # position among the sorted unique symbols.
        symbol_col = frame["symbol"].cast(pl.String)
        symbols = symbol_col.unique().sort().to_list()
        rows = np.searchsorted(calendar, dates)
        cols = (symbol_col.rank("dense") - 1).to_numpy().astype(np.intp, copy=False)
        values = np.full((len(FIELDS), calendar.shape[0], len(symbols)), np.nan)
        for f in OHLCV:
            values[FIELD_INDEX[f], rows, cols] = frame[f].cast(pl.Float64).to_numpy()
        values[FIELD_INDEX["price"]] = _ffill(values[FIELD_INDEX["close"]])
        return cls(name, frequency, calendar, symbols, values, version=version)

    def to_long_frame(self) -> pl.DataFrame:
        """The bundle as a long frame ``date, symbol, open, high, low, close, volume`` (bars that exist only)."""
        close = self.values[FIELD_INDEX["close"]]
        rows, cols = np.nonzero(~np.isnan(close))
        order = np.lexsort((rows, cols))  # symbol-major, then date
        rows, cols = rows[order], cols[order]
        data: dict[str, Any] = {
            "date": self.calendar[rows],
            "symbol": np.asarray(self.symbols, dtype=object)[cols],
        }
        for f in OHLCV:
            data[f] = self.values[FIELD_INDEX[f], rows, cols]
        return pl.DataFrame(data).with_columns(pl.col("date").cast(pl.Datetime("ns")))

    # -- pickling: one buffer, zero-copy in Ray's object store ----------------------

    def __getstate__(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "frequency": self.frequency,
            "calendar": self.calendar,
            "symbols": self.symbols,
            "values": self.values,
            "version": self.version,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Skip __init__'s validation and copies: the block may be a read-only view
        # into Ray's shared memory, and it must stay one.
        self.name = state["name"]
        self.frequency = state["frequency"]
        self.calendar = state["calendar"]
        self.values = state["values"]
        self.version = state["version"]
        has_bar = ~np.isnan(self.values[FIELD_INDEX["close"]])
        self.assets = tuple(
            _make_asset(i, str(s), self.calendar, has_bar[:, i]) for i, s in enumerate(state["symbols"])
        )
        self._by_symbol = {a.symbol: a for a in self.assets}
        self._sessions = None

    # -- access ---------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """Symbols in column order."""
        return [a.symbol for a in self.assets]

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, N)``: bars and assets."""
        return (self.values.shape[1], self.values.shape[2])

    @property
    def bar_frequency(self) -> BarFrequency:
        """The frequency as a :class:`BarFrequency`."""
        return BarFrequency(self.frequency)

    def field(self, name: str) -> np.ndarray:
        """The ``(T, N)`` read-only array of one field (a view, never a copy)."""
        try:
            return self.values[FIELD_INDEX[name]]
        except KeyError:
            raise BundleValidationError(f"unknown field {name!r}; fields are {', '.join(FIELDS)}") from None

    @property
    def open(self) -> np.ndarray:
        """Open prices, ``(T, N)``."""
        return self.values[0]

    @property
    def high(self) -> np.ndarray:
        """High prices, ``(T, N)``."""
        return self.values[1]

    @property
    def low(self) -> np.ndarray:
        """Low prices, ``(T, N)``."""
        return self.values[2]

    @property
    def close(self) -> np.ndarray:
        """Close prices, ``(T, N)``."""
        return self.values[3]

    @property
    def volume(self) -> np.ndarray:
        """Volumes, ``(T, N)``."""
        return self.values[4]

    @property
    def price(self) -> np.ndarray:
        """Close forward-filled per asset (NaN before an asset's first bar), ``(T, N)``."""
        return self.values[5]

    def symbol(self, symbol: str) -> Asset:
        """The asset with this symbol; raises :class:`SymbolNotFoundError` naming the known ones."""
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise SymbolNotFoundError(
                f"symbol {symbol!r} is not in bundle {self.name!r}; it has {', '.join(self.symbols)}"
            ) from None

    def resolve_assets(self, assets: Iterable[Asset | str | int] | None) -> list[Asset]:
        """Assets from symbols, sids or assets (``None`` means all)."""
        if assets is None:
            return list(self.assets)
        out = []
        for a in assets:
            if isinstance(a, Asset):
                out.append(self.assets[int(a)])
            elif isinstance(a, str):
                out.append(self.symbol(a))
            else:
                out.append(self.assets[int(a)])
        return out

    @property
    def sessions(self) -> np.ndarray:
        """Session (trading day) of each bar as ``datetime64[D]``; for daily bars the bar's own date."""
        if self._sessions is None:
            self._sessions = self.calendar.astype("datetime64[D]")
        return self._sessions

    @property
    def periods_per_year(self) -> float:
        """Bars per year for annualising metrics: 252 sessions times the median bars per session."""
        if self.frequency == "1d" or self.calendar.shape[0] == 0:
            return float(_SESSIONS_PER_YEAR)
        _, counts = np.unique(self.sessions, return_counts=True)
        return float(_SESSIONS_PER_YEAR * np.median(counts))

    def index_range(self, start: Any = None, end: Any = None) -> tuple[int, int]:
        """Bar indices ``[i0, i1)`` of bars with ``start <= timestamp`` and session ``<= end``.

        ``start``/``end`` may be strings, dates, datetimes or ``datetime64``; a date-only
        ``end`` includes every bar of that day.
        """
        t = self.calendar
        i0 = 0 if start is None else int(np.searchsorted(t, _to_ns(start), side="left"))
        if end is None:
            i1 = t.shape[0]
        else:
            e = _to_ns(end)
            if _is_date_only(end):
                e = e + np.timedelta64(1, "D") - np.timedelta64(1, "ns")
            i1 = int(np.searchsorted(t, e, side="right"))
        return i0, i1

    def slice(self, start: Any = None, end: Any = None) -> Bundle:
        """A new bundle with only the bars in ``[start, end]`` (data copied)."""
        i0, i1 = self.index_range(start, end)
        return Bundle(self.name, self.frequency, self.calendar[i0:i1], self.symbols, self.values[:, i0:i1].copy())

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return int(self.values.nbytes + self.calendar.nbytes)

    def __repr__(self) -> str:
        T, N = self.shape
        span = f"{self.calendar[0]!s:.10}..{self.calendar[-1]!s:.10}" if T else "empty"
        return f"Bundle({self.name!r}, {self.frequency}, {N} assets x {T} bars, {span}, version {self.version[:12]})"


def _make_asset(sid: int, symbol: str, calendar: np.ndarray, has_bar: np.ndarray) -> Asset:
    idx = np.flatnonzero(has_bar)
    if idx.size:
        return Asset(sid, symbol, calendar[idx[0]], calendar[idx[-1]])
    return Asset(sid, symbol)


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs down each column of a ``(T, N)`` array (leading NaNs stay)."""
    if a.size == 0:
        return a.copy()
    mask = np.isnan(a)
    idx = np.where(mask, 0, np.arange(a.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = a[idx, np.arange(a.shape[1])[None, :]]
    return out


def _content_hash(calendar: np.ndarray, symbols: Sequence[str], values: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(calendar).view(np.int64).tobytes())
    h.update("\x00".join(symbols).encode())
    h.update(np.ascontiguousarray(values[: len(OHLCV)]).tobytes())
    return h.hexdigest()


def _to_ns(value: Any) -> np.datetime64:
    try:
        if isinstance(value, np.datetime64):
            return value.astype("datetime64[ns]")
        if hasattr(value, "isoformat") and not isinstance(value, str):
            value = value.isoformat()
            value = value.split("+")[0]
        return np.datetime64(str(value).replace(" ", "T"), "ns")
    except ValueError as exc:
        raise BundleValidationError(f"cannot read {value!r} as a date or timestamp") from exc


def _is_date_only(value: Any) -> bool:
    if isinstance(value, str):
        return len(value.strip()) <= 10
    if isinstance(value, np.datetime64):
        return np.datetime_data(value.dtype)[0] == "D"
    return type(value).__name__ == "date"
