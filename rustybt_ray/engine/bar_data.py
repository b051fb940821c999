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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rustybt_ray.data.bundle import FIELD_INDEX, FIELDS, Asset, Bundle
from rustybt_ray.errors import HistoryError

_FREQ_ALIASES = {"daily": "1d", "minute": "1m", "1min": "1m", "1day": "1d", "hourly": "1h"}


class BarData:
    """The strategy's window on the bundle at the engine's current bar (``data`` in ``handle_data``)."""

    __slots__ = ("_t", "_fields", "_bundle", "_assets", "_col_cache", "_freq", "_ok_freqs", "_calendar")

    def __init__(self, bundle: Bundle) -> None:
        self._bundle = bundle
        self._fields = [bundle.values[i] for i in range(len(FIELDS))]
        self._assets = bundle.assets
        self._calendar = bundle.calendar
        self._freq = bundle.frequency
        self._ok_freqs = {bundle.frequency, None}
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
        must be the bundle's bar frequency (``'1d'`` for daily bundles).
        See the module docstring for the shapes.
        """
        if frequency not in self._ok_freqs:
            self._check_frequency(frequency)
        if not (type(bar_count) is int and bar_count > 0):
            bar_count = _check_bar_count(bar_count)
        t1 = self._t + 1
        t0 = t1 - bar_count
        single_asset = isinstance(assets, int)
        if single_asset:
            cols: Any = assets
        else:
            key = tuple(assets)
            cols = self._col_cache.get(key)
            if cols is None:
                cols = self._columns(key)
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

    def _check_frequency(self, frequency: Any) -> None:
        canon = _FREQ_ALIASES.get(frequency, frequency)
        if canon == self._freq:
            self._ok_freqs.add(frequency)
            return
        raise HistoryError(
            f"frequency {frequency!r} does not match bundle {self._bundle.name!r}, which has {self._freq} bars; "
            f"use frequency={self._freq!r} (resampling inside history is not supported)"
        )

    def _to_pandas(
        self, out: np.ndarray, assets: Any, fields: Any, t0: int, t1: int, single_asset: bool
    ) -> Any:
        import pandas as pd  # only strategies that ask for DataFrames pay for pandas

        index = pd.DatetimeIndex(_window_times(self._calendar, t0, t1), name="date")
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
