"""``BarData``: what a strategy sees of the market at the current bar.

Timing contract: while the engine processes bar ``t`` (``handle_data`` and
scheduled functions), ``history`` ends with bar ``t`` itself and never shows bar
``t + 1``; ``current`` is bar ``t``. During ``before_trading_start`` of bar ``t``
the view ends at bar ``t - 1``: the bar has not opened yet.

Shapes (zipline's conventions; ``k = bar_count``):

=====================  ==================  ==========================  ===========================
assets                 fields              ``return_type='array'``     ``'dataframe'``
=====================  ==================  ==========================  ===========================
one asset              one field (str)     ``(k,)``                    ``pd.Series`` (index: time)
one asset              list of fields      ``(k, n_fields)``           ``pd.DataFrame`` (columns: fields)
list of assets         one field           ``(k, n_assets)``           ``pd.DataFrame`` (columns: assets)
list of assets         list of fields      ``(k, n_assets, n_fields)``  ``pd.DataFrame``, rows (time, asset)
=====================  ==================  ==========================  ===========================

One field is zero-copy: the array is a read-only view into the bundle (a slice when
the assets are all, or a contiguous run of, the bundle's assets in column order).
Several fields, or assets out of column order, need one gather copy. Windows that
start before the first bar of the calendar are padded with NaN (a copy).

Daily bars from an intraday bundle: ``frequency='1d'`` on a minute or hourly bundle
gives one row per session (calendar day of the bars), built from the bars without
look-ahead. Each completed session is aggregated per asset: open is its first open,
high the max, low the min, close the last close, volume the sum, price the last known
close. The last row is today's session so far, up to and including the current bar,
as zipline shows it. A session where an asset has no bar yet is NaN for it (``price``
excepted). These rows are always a copy. The per-bar running aggregates behind them
are computed once per bundle version and field, on first use, and kept in the run's
:class:`~rustybt_ray.engine.array_cache.ArrayCache` (a worker's own; the process-wide
:func:`~rustybt_ray.engine.array_cache.default_cache` when none is given).
DataFrames are indexed by the session's date (midnight).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rustybt_ray.data.bundle import FIELD_INDEX, FIELDS, Asset, Bundle
from rustybt_ray.data.frequency import session_index
from rustybt_ray.engine.array_cache import ArrayCache, default_cache
from rustybt_ray.errors import HistoryError

_FREQ_ALIASES = {"daily": "1d", "minute": "1m", "1min": "1m", "1day": "1d", "hourly": "1h", "60m": "1h"}


class BarData:
    """The strategy's window on the bundle at the engine's current bar (``data`` in ``handle_data``)."""

    __slots__ = ("_t", "_fields", "_bundle", "_assets", "_col_cache", "_freq", "_ok_freqs", "_calendar",
                 "_daily_freqs", "_daily", "_cache")

    def __init__(self, bundle: Bundle, cache: ArrayCache | None = None) -> None:
        self._bundle = bundle
        self._cache = cache  # where '1d' aggregates live; None: the process-wide default_cache()
        self._fields = [bundle.values[i] for i in range(len(FIELDS))]
        self._assets = bundle.assets
        self._calendar = bundle.calendar
        self._freq = bundle.frequency
        self._ok_freqs = {bundle.frequency, None}
        self._daily_freqs: set[Any] = set()
        self._daily: _DailyBars | None = None
        self._col_cache: dict[tuple[int, ...], slice | np.ndarray] = {}
        self._t = -1

    @property
    def current_dt(self) -> np.datetime64:
        """Timestamp of the bar the strategy is at."""
        return self._calendar[self._t]

    @property
    def bar_index(self) -> int:
        """Index of the current bar in the bundle calendar."""
        return self._t

    # -- history ----------------------------------------------------------------------

    def history(
        self,
        assets: Asset | Sequence[Asset],
        fields: str | Sequence[str],
        bar_count: int,
        frequency: str | None = None,
        return_type: str = "dataframe",
    ) -> Any:
        """The last ``bar_count`` bars up to and including the current bar.

        ``return_type='array'`` gives NumPy (a zero-copy view for one field);
        ``'dataframe'`` gives pandas objects with the same numbers. ``frequency``
        is the bundle's bar frequency (the default), or ``'1d'`` on an intraday
        bundle for daily bars: completed sessions, then today's so far (see the
        module docstring). See the module docstring for the shapes.
        """
        if frequency not in self._ok_freqs and (frequency in self._daily_freqs or self._check_frequency(frequency)):
            return self._daily_history(assets, fields, bar_count, return_type)
        if not (type(bar_count) is int and bar_count > 0):
            bar_count = _check_bar_count(bar_count)
        t1 = self._t + 1
        t0 = t1 - bar_count
        single_asset = isinstance(assets, int)
        cols: Any = assets if single_asset else self._cached_columns(assets)
        if type(fields) is str:
            try:
                block = self._fields[FIELD_INDEX[fields]]
            except KeyError:
                raise HistoryError(f"unknown field {fields!r}; use one of {', '.join(FIELDS)}") from None
            out = block[t0:t1, cols] if t0 >= 0 else _padded(block, t0, t1, cols)
        else:
            out = self._multi_field(fields, t0, t1, cols, single_asset)
        if return_type == "array":
            return out
        if return_type == "dataframe":
            return self._to_pandas(out, assets, fields, t0, t1, single_asset)
        raise HistoryError(f"return_type must be 'array' or 'dataframe', got {return_type!r}")

    def _multi_field(self, fields: Sequence[str], t0: int, t1: int, cols: Any, single_asset: bool) -> np.ndarray:
        try:
            idx = [FIELD_INDEX[f] for f in fields]
        except KeyError as exc:
            raise HistoryError(f"unknown field {exc.args[0]!r}; use one of {', '.join(FIELDS)}") from None
        parts = [self._fields[i] for i in idx]
        windows = [p[t0:t1, cols] if t0 >= 0 else _padded(p, t0, t1, cols) for p in parts]
        return np.stack(windows, axis=-1)

    def _cached_columns(self, assets: Any) -> Any:
        """The column indices of ``assets``, cached by the tuple (strategies ask for the same lists)."""
        key = tuple(assets)
        cols = self._col_cache.get(key)
        return self._columns(key) if cols is None else cols

    def _columns(self, key: tuple[Any, ...]) -> slice | np.ndarray:
        n = len(self._assets)
        try:
            idx = [int(a) for a in key]
        except (TypeError, ValueError):
            raise HistoryError(f"assets must be Asset objects (use symbol('AAPL')), got {key!r}") from None
        if any(i < 0 or i >= n for i in idx):
            raise HistoryError(f"asset out of range for this bundle: {key!r}")
        if idx and idx == list(range(idx[0], idx[0] + len(idx))):
            cols: slice | np.ndarray = slice(idx[0], idx[0] + len(idx))
        else:
            cols = np.asarray(idx, dtype=np.int64)
        self._col_cache[key] = cols
        return cols

    def _check_frequency(self, frequency: Any) -> bool:
        """Remember an accepted ``frequency``: False for the bundle's own, True for daily bars of an intraday one."""
        canon = _FREQ_ALIASES.get(frequency, frequency) if isinstance(frequency, str) else frequency
        if canon == self._freq:
            self._ok_freqs.add(frequency)
            return False
        if canon == "1d":
            self._daily_freqs.add(frequency)
            return True
        raise HistoryError(
            f"frequency {frequency!r} does not match bundle {self._bundle.name!r}, which has {self._freq} bars; "
            f"use frequency={self._freq!r}"
            + (" or '1d' (daily bars built from them; no other resampling inside history)" if self._freq != "1d"
               else " (resampling inside history is not supported)")
        )

    def _daily_history(self, assets: Any, fields: Any, bar_count: Any, return_type: str) -> Any:
        """``history(..., frequency='1d')`` on an intraday bundle: sessions so far, the last one partial."""
        if not (type(bar_count) is int and bar_count > 0):
            bar_count = _check_bar_count(bar_count)
        daily = self._daily
        if daily is None:
            daily = self._daily = _DailyBars(self._bundle, self._cache)
        single_asset = isinstance(assets, int)
        cols: Any = assets if single_asset else self._cached_columns(assets)
        t = self._t
        if type(fields) is str:
            fi = FIELD_INDEX.get(fields)
            if fi is None:
                raise HistoryError(f"unknown field {fields!r}; use one of {', '.join(FIELDS)}")
            out = daily.window(fi, t, bar_count, cols)
        else:
            try:
                idx = [FIELD_INDEX[f] for f in fields]
            except KeyError as exc:
                raise HistoryError(f"unknown field {exc.args[0]!r}; use one of {', '.join(FIELDS)}") from None
            out = np.stack([daily.window(fi, t, bar_count, cols) for fi in idx], axis=-1)
        if return_type == "array":
            return out
        if return_type == "dataframe":
            return self._frame(out, assets, fields, daily.labels(t, bar_count), single_asset)
        raise HistoryError(f"return_type must be 'array' or 'dataframe', got {return_type!r}")

    def _to_pandas(
        self, out: np.ndarray, assets: Any, fields: Any, t0: int, t1: int, single_asset: bool
    ) -> Any:
        return self._frame(out, assets, fields, _window_times(self._calendar, t0, t1), single_asset)

    @staticmethod
    def _frame(out: np.ndarray, assets: Any, fields: Any, times: np.ndarray, single_asset: bool) -> Any:
        import pandas as pd  # only strategies that ask for DataFrames pay for pandas

        index = pd.DatetimeIndex(times, name="date")
        single_field = type(fields) is str
        if single_asset and single_field:
            return pd.Series(out, index=index, name=fields)
        if single_asset:
            return pd.DataFrame(out, index=index, columns=list(fields))
        asset_list = list(assets)
        if single_field:
            return pd.DataFrame(out, index=index, columns=asset_list)
        rows = pd.MultiIndex.from_product([index, asset_list], names=["date", "asset"])
        return pd.DataFrame(out.reshape(-1, out.shape[-1]), index=rows, columns=list(fields))

    # -- current bar ------------------------------------------------------------------

    def current(self, assets: Asset | Sequence[Asset], fields: str | Sequence[str]) -> Any:
        """Values at the current bar: a float for one asset and one field, else an array.

        Shapes: list of assets and one field ``(n_assets,)``; one asset and a list of
        fields ``(n_fields,)``; both lists ``(n_assets, n_fields)``. A field is NaN
        where the asset has no bar now, except ``price``, the last known close.
        """
        t = self._t
        if type(fields) is str:
            try:
                block = self._fields[FIELD_INDEX[fields]]
            except KeyError:
                raise HistoryError(f"unknown field {fields!r}; use one of {', '.join(FIELDS)}") from None
            if isinstance(assets, int):
                return float(block[t, assets])
            return block[t, [int(a) for a in assets]]
        try:
            idx = [FIELD_INDEX[f] for f in fields]
        except KeyError as exc:
            raise HistoryError(f"unknown field {exc.args[0]!r}; use one of {', '.join(FIELDS)}") from None
        if isinstance(assets, int):
            return np.array([self._fields[i][t, assets] for i in idx])
        cols = [int(a) for a in assets]
        return np.stack([self._fields[i][t, cols] for i in idx], axis=-1)

    def can_trade(self, assets: Asset | Sequence[Asset]) -> Any:
        """Whether the asset has a bar now (so an order placed now can fill at its next bar).

        A bool for one asset, a boolean array for a list.
        """
        close = self._fields[3]
        if isinstance(assets, int):
            return not np.isnan(close[self._t, assets])
        return ~np.isnan(close[self._t, [int(a) for a in assets]])

    def is_stale(self, assets: Asset | Sequence[Asset]) -> Any:
        """Whether the asset has traded before but has no bar now (zipline's ``is_stale``)."""
        close, price = self._fields[3], self._fields[5]
        t = self._t
        if isinstance(assets, int):
            return bool(np.isnan(close[t, assets]) and not np.isnan(price[t, assets]))
        cols = [int(a) for a in assets]
        return np.isnan(close[t, cols]) & ~np.isnan(price[t, cols])


def _check_bar_count(bar_count: Any) -> int:
    if isinstance(bar_count, (int, np.integer)) and not isinstance(bar_count, bool) and bar_count > 0:
        return int(bar_count)
    raise HistoryError(f"bar_count must be a positive int, got {bar_count!r}")


def _padded(block: np.ndarray, t0: int, t1: int, cols: Any) -> np.ndarray:
    """A window reaching before the first bar: NaN rows, then the real bars (a copy)."""
    real = block[0:max(t1, 0), cols]
    pad_shape = (-t0,) + real.shape[1:] if t1 > 0 else (t1 - t0,) + real.shape[1:]
    return np.concatenate([np.full(pad_shape, np.nan), real], axis=0)


def _window_times(calendar: np.ndarray, t0: int, t1: int) -> np.ndarray:
    if t0 >= 0:
        return calendar[t0:t1]
    # Label padded rows with NaT: there is no bar there to name.
    pad = np.full(-t0, np.datetime64("NaT", "ns"))
    return np.concatenate([pad, calendar[0:t1]])


class _DailyBars:
    """Daily bars of an intraday bundle as the clock reaches them (see the module docstring).

    ``running[f][t]`` is field ``f`` of bar ``t``'s session aggregated over its bars up
    to and including ``t``, so it never looks past ``t``; ``done[f][s]`` is session
    ``s`` complete (``running`` at its last bar). A window at bar ``t`` is
    ``done[s - k + 1 : s]`` followed by ``running[t]``.
    """

    __slots__ = ("_bundle", "_sid", "_last", "_days", "_running", "_done", "_cache")

    def __init__(self, bundle: Bundle, cache: ArrayCache | None = None) -> None:
        self._bundle = bundle
        self._cache = cache = cache if cache is not None else default_cache()
        version = bundle.version
        cal = bundle.calendar
        self._sid = cache.get_or_compute((version, "daily_bars", "sid"), lambda: session_index(cal)[0])
        self._last = cache.get_or_compute((version, "daily_bars", "last"), lambda: _session_last(cal))
        self._days = cache.get_or_compute(
            (version, "daily_bars", "days"), lambda: session_index(cal)[2].astype("datetime64[ns]")
        )
        self._running: list[np.ndarray | None] = [None] * len(FIELDS)
        self._done: list[np.ndarray | None] = [None] * len(FIELDS)

    def _arrays(self, fi: int) -> tuple[np.ndarray, np.ndarray]:
        running = self._running[fi]
        done = self._done[fi]
        if running is None or done is None:
            b = self._bundle
            cache = self._cache
            if FIELDS[fi] == "price":
                running = b.price  # already the last known close: nothing to aggregate
            else:
                running = cache.get_or_compute(
                    (b.version, "daily_bars", "running", fi),
                    lambda: running_session_field(b.values[fi], FIELDS[fi], session_index(b.calendar)[1]),
                )
            last = self._last
            done = cache.get_or_compute((b.version, "daily_bars", "done", fi), lambda: running[last])
            self._running[fi], self._done[fi] = running, done
        return running, done

    def window(self, fi: int, t: int, k: int, cols: Any) -> np.ndarray:
        """The ``k`` daily rows of field ``fi`` at bar ``t`` (NaN rows before the first session)."""
        running, done = self._arrays(fi)
        if t < 0:  # before the first bar (initialize): nothing is known yet
            return np.full((k,) + running[0, cols].shape, np.nan)
        s = int(self._sid[t])
        s0 = s - k + 1
        if s0 >= 0:
            return np.concatenate((done[s0:s, cols], running[t : t + 1, cols]))
        pad = np.full((-s0,) + running[0, cols].shape, np.nan)
        return np.concatenate((pad, done[0:s, cols], running[t : t + 1, cols]))

    def labels(self, t: int, k: int) -> np.ndarray:
        """The session dates of a window at bar ``t`` (NaT for padding rows)."""
        if t < 0:
            return np.full(k, np.datetime64("NaT", "ns"))
        s = int(self._sid[t])
        s0 = s - k + 1
        if s0 >= 0:
            return self._days[s0 : s + 1]
        return np.concatenate([np.full(-s0, np.datetime64("NaT", "ns")), self._days[: s + 1]])


def _session_last(calendar: np.ndarray) -> np.ndarray:
    """Index of each session's last bar."""
    _, starts, _ = session_index(calendar)
    return np.r_[starts[1:], calendar.shape[0]].astype(np.int64) - 1


def running_session_field(values: np.ndarray, field: str, starts: np.ndarray) -> np.ndarray:
    """Field ``field`` of each bar's session so far: a ``(T, N)`` array like ``values``.

    Row ``t`` aggregates the asset's bars from its session's first bar (``starts``)
    through ``t``: ``open`` the first open, ``high`` the running max, ``low`` the
    running min, ``close`` the last close, ``volume`` the running sum. NaN bars (no
    bar for the asset) are skipped; NaN until the asset's first bar of the session.
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.empty_like(v)
    n_rows = v.shape[0]
    ends = np.r_[starts[1:], n_rows].astype(np.int64)
    cols = np.arange(v.shape[1])
    # One pass per session: NumPy has no segmented accumulate, and sessions are few
    # (about 252 a year) next to the bars in them.
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        seg = v[a:b]
        if field == "high":
            out[a:b] = np.fmax.accumulate(seg, axis=0)
            continue
        if field == "low":
            out[a:b] = np.fmin.accumulate(seg, axis=0)
            continue
        valid = ~np.isnan(seg)
        seen = np.logical_or.accumulate(valid, axis=0)
        if field == "open":
            first = seg[valid.argmax(axis=0), cols]
            out[a:b] = np.where(seen, first, np.nan)
        elif field == "close":
            idx = np.where(valid, np.arange(b - a)[:, None], 0)
            np.maximum.accumulate(idx, axis=0, out=idx)
            out[a:b] = np.where(seen, seg[idx, cols], np.nan)
        elif field == "volume":
            out[a:b] = np.where(seen, np.cumsum(np.where(valid, seg, 0.0), axis=0), np.nan)
        else:
            raise HistoryError(f"no daily aggregate for field {field!r}; use one of {', '.join(FIELDS)}")
    return out
