"""Target weights for many assets in one call: ``TradingAlgorithm.order_target_percents``.

A rebalancing strategy sets a target weight per asset every bar. Calling
``order_target_percent`` once per asset pays a method call, argument checks and an
order-book call per asset; this sizes the whole vector in one loop and queues the
orders in one book call. The orders are those of the per-asset calls made in order,
bit for bit: the same portfolio value, ``weight * value / price``, the same rounding
rule against held plus open shares, the same order ids. Up to 64 assets the loop
runs on plain floats (at a few assets NumPy's per-call overhead costs more than the
arithmetic); from ``_NUMPY_FROM`` assets on, sizing runs in NumPy.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rustybt_ray.data.bundle import Asset
from rustybt_ray.errors import OrderError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from rustybt_ray.engine.algorithm import TradingAlgorithm

#: From this many assets in one call on, order sizing runs in NumPy.
_NUMPY_FROM = 65
_trunc = math.trunc
_mul = operator.mul
_F64 = np.dtype(np.float64)


def order_target_percents(self: TradingAlgorithm, weights: ArrayLike | Mapping[Asset | str, float],
                          assets: Sequence[Asset | str] | None = None) -> list[int]:
    """Order what it takes for each asset to be its weight (0.1 = 10%) of the portfolio value.

    The batch form of :meth:`order_target_percent` for rebalancing strategies:
    ``weights[i]`` is the target of ``assets[i]``; ``assets`` defaults to every asset
    of the bundle in column order (the columns of ``self.bundle.close`` and of
    indicator arrays computed from it). ``weights`` may also be an ``{asset: weight}``
    mapping or a pandas Series indexed by asset. The orders, their amounts and ids
    are exactly those of ``order_target_percent(assets[i], weights[i])`` called for
    each ``i`` in order; an asset already at its target gets no order.

    Returns the ids of the orders placed, in the order of ``assets``. Raises
    :class:`~rustybt_ray.errors.OrderError`, placing no order of the call, when the
    number of weights differs from the number of assets, a weight is not a finite
    number, or an asset with a non-zero weight has no price yet.
    """
    if assets is None and type(weights) is np.ndarray and weights.dtype is _F64 and weights.ndim == 1:
        ws = weights.tolist()
        cols: Sequence[int] = self._rb_cols  # range(n_assets)
        if len(ws) != len(cols):
            _fail_length(ws, cols, assets)
    else:
        cols, ws = _columns_and_weights(self, weights, assets)
        if len(ws) != len(cols):
            _fail_length(ws, cols, assets)
        if type(cols) is not range and len(set(cols)) != len(cols):
            _check_finite(self, cols, ws)
            return _one_by_one(self, cols, ws, self._rb_data._t)
    # A NaN or infinite weight is caught by the loop below: it makes x NaN or infinite,
    # on which trunc() raises before any order is queued.
    t = self._rb_data._t
    if self._rb_pv_t == t:
        fresh = False
    elif t >= 0 and self._rb_lists:
        # _rb_refresh's numbers without copying the positions: ``held`` is only read here
        # and the cached view stays stale, so a later call in this bar refreshes and
        # counts these orders as open.
        fresh = True
        ledger = self._rb_ledger
        rows = self._rb_marks
        prow = rows[t] if rows is not None else self._rb_price[t].tolist()
        pos = ledger.pos
        pv = ledger.cash + sum(map(_mul, pos, prow))  # as _rb_refresh
        if pv != pv:
            pv = ledger.cash + sum([q * p for q, p in zip(pos, prow) if q])
        book = self._rb_book
        held = [q + o for q, o in zip(pos, book.open_amounts())] if book._ids else pos
    else:
        self._rb_refresh()
        fresh = False
    if not fresh:
        pv, prow, held = self._rb_pv, self._rb_prow, self._rb_held
        if len(cols) >= _NUMPY_FROM:
            return _numpy_path(self, cols, ws, t)
    if type(cols) is not range:
        prow = [prow[a] for a in cols]
        held_now = [held[a] for a in cols]
    else:
        held_now = held
    order_assets: list[int] = []
    order_amounts: list[float] = []
    add_asset, add_amount, trunc = order_assets.append, order_amounts.append, _trunc
    try:
        for a, w, p, h in zip(cols, ws, prow, held_now):
            if w:
                if not p > 0:
                    _fail_no_price(self, a, cols, ws)
                x = w * pv / p - h  # as order_target_percent: target * value / price - held
            elif h:
                x = 0.0 - h
            else:
                continue
            # algorithm._round_shares inlined: the nearest integer within 1e-4, else toward zero
            r = trunc(x)  # raises on a NaN or infinite x
            d = x - r
            if d >= 0.9999:
                r += 1
            elif d <= -0.9999:
                r -= 1
            if r:
                add_asset(a)
                add_amount(float(r))
    except (OverflowError, ValueError):
        _check_finite(self, cols, ws)
        raise OrderError(f"order_target_percents: the weights {ws!r} give share counts out of range") from None
    if not order_assets:
        return []
    if not self._rb_started:
        from rustybt_ray.engine.algorithm import _NO_ORDERS_IN_INITIALIZE

        raise OrderError(_NO_ORDERS_IN_INITIALIZE)
    if not fresh:  # keep the cached view current, as order_target_percent does
        for a, q in zip(order_assets, order_amounts):
            held[a] += q
    n = len(order_assets)
    first = self._rb_book.place_many(order_assets, order_amounts, t)
    return list(range(first, first + n))


def _fail_length(ws: list[float], cols: Sequence[int], assets: Any) -> None:
    raise OrderError(
        f"order_target_percents got {len(ws)} weights for {len(cols)} assets: pass one weight per asset "
        f"({'every asset of the bundle, in column order' if assets is None else 'of assets'})"
    )


def _numpy_path(self: TradingAlgorithm, cols: Sequence[int], ws: list[float], t: int) -> list[int]:
    # Distinct assets (checked by the caller), the cached per-bar view valid.
    idx = np.asarray(cols, dtype=np.int64)
    w = np.asarray(ws, dtype=np.float64)
    prices = self._rb_price[t][idx] if t >= 0 else np.full(idx.shape[0], np.nan)
    need = w != 0
    no_price = need & ~(prices > 0)
    if no_price.any():
        _fail_no_price(self, int(idx[np.argmax(no_price)]), cols, ws)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = np.where(need, w * self._rb_pv / np.where(need, prices, 1.0), 0.0) - np.asarray(self._rb_held)[idx]
    if not np.isfinite(x).all():
        _check_finite(self, cols, ws)
        raise OrderError(f"order_target_percents: the weights {ws!r} give share counts out of range")
    r = np.round(x)  # half to even, as round(); ties are 0.5 away, so they truncate either way
    q = np.where(np.abs(x - r) < 1e-4, r, np.trunc(x))
    nz = np.flatnonzero(q)
    if not nz.shape[0]:
        return []
    if not self._rb_started:
        from rustybt_ray.engine.algorithm import _NO_ORDERS_IN_INITIALIZE

        raise OrderError(_NO_ORDERS_IN_INITIALIZE)
    order_assets = idx[nz].tolist()
    order_amounts = q[nz].tolist()
    held = self._rb_held
    for a, amount in zip(order_assets, order_amounts):
        held[a] += amount
    n = len(order_assets)
    first = self._rb_book.place_many(order_assets, order_amounts, t)
    return list(range(first, first + n))


def _one_by_one(self: TradingAlgorithm, cols: list[int], ws: list[float], t: int) -> list[int]:
    # An asset listed twice: each entry must see the orders of those before it, as the
    # per-asset calls do. Prices are checked first so that a failing call places nothing.
    if self._rb_pv_t != t:
        self._rb_refresh()
    for a, w in zip(cols, ws):
        if w and not self._rb_prow[a] > 0:
            _fail_no_price(self, a, cols, ws)
    assets = self._rb_assets
    ids = [self.order_target_percent(assets[a], w) for a, w in zip(cols, ws)]
    return [i for i in ids if i is not None]


def _columns_and_weights(self: TradingAlgorithm, weights: Any,
                         assets: Sequence[Asset | str] | None) -> tuple[Sequence[int], list[float]]:
    if isinstance(weights, Mapping) or (hasattr(weights, "to_numpy") and hasattr(weights, "index")
                                        and not callable(weights.index)):
        # {asset: weight}, or a pandas Series indexed by asset
        if assets is not None:
            raise OrderError("order_target_percents: weights keyed by asset already name the assets; drop assets=")
        if isinstance(weights, Mapping):
            return _resolve(self, list(weights.keys())), _floats(list(weights.values()))
        return _resolve(self, list(weights.index)), _floats(weights.to_numpy())
    cols = range(len(self._rb_assets)) if assets is None else _resolve(self, assets)
    return cols, _floats(weights)


def _resolve(self: TradingAlgorithm, assets: Any) -> list[int]:
    if isinstance(assets, (str, Asset)) or not hasattr(assets, "__iter__"):
        raise OrderError(f"order_target_percents needs a sequence of assets, got {assets!r}")
    return [a if type(a) is Asset else self._rb_resolve(a) for a in assets]


def _floats(weights: Any) -> list[float]:
    if isinstance(weights, np.ndarray):
        if weights.ndim != 1:
            raise OrderError(f"order_target_percents needs a 1-D vector of weights, got shape {weights.shape}")
        if weights.dtype.kind not in "biuf":
            raise OrderError(f"order_target_percents weights must be numbers, got dtype {weights.dtype}")
        return weights.astype(np.float64).tolist()
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
        raise OrderError(f"order_target_percents needs a sequence of weights, got {weights!r}")
    try:
        return [float(w) for w in weights]
    except (TypeError, ValueError):
        raise OrderError(f"order_target_percents weights must be numbers, got {weights!r}") from None


def _check_finite(self: TradingAlgorithm, cols: Sequence[int], ws: list[float]) -> None:
    for a, w in zip(cols, ws):
        if not math.isfinite(w):
            raise OrderError(
                f"order_target_percents weight for {self._rb_assets[a].symbol} must be finite, got {w!r} "
                "(a NaN signal? check your indicator's warm-up)"
            )


def _fail_no_price(self: TradingAlgorithm, a: int, cols: Sequence[int], ws: list[float]) -> None:
    _check_finite(self, cols, ws)  # a non-finite weight is the problem to report first
    self._rb_price_now(self._rb_assets[a])  # raises OrderError naming the asset and the bar
    raise AssertionError("unreachable")
