"""Target weights for many assets in one call: ``TradingAlgorithm.order_target_percents``.

A rebalancing strategy sets a target weight per asset every bar. Calling
``order_target_percent`` once per asset pays a method call, argument checks and an
order-book call per asset; this sizes the whole vector in one loop and queues the
orders in one book call. The orders are those of the per-asset calls made in order,
bit for bit: the same portfolio value, ``weight * value / price``, the same rounding
rule against held plus open shares, the same order ids. Up to 64 assets the loop
runs on plain floats (at a few assets NumPy's per-call overhead costs more than the
arithmetic); from ``_NUMPY_FROM`` assets on, sizing runs in NumPy. A wide ledger
(positions as an array, ``ledger.ARRAY_POSITIONS_FROM``) is sized without leaving
NumPy: the weight vector, prices and held shares are never turned into lists. With
fractional shares the call places the per-asset calls' orders by making them, one by one.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rustybt_ray.data.bundle import Asset
from rustybt_ray.engine.shares import (
    NEG_SNAP_FRACTION,
    SNAP_FRACTION,
    round_shares_array,
)
from rustybt_ray.engine.state import HasRunState, RunState
from rustybt_ray.errors import OrderError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: From this many assets in one call on, order sizing runs in NumPy.
_NUMPY_FROM = 65
_trunc = math.trunc
_mul = operator.mul
_F64 = np.dtype(np.float64)


def order_target_percents(self: HasRunState, weights: ArrayLike | Mapping[Asset | str, float],
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
    state = self._rb
    if assets is None and type(weights) is np.ndarray and weights.dtype is _F64 and weights.ndim == 1:
        if (state.ledger.wide and not state.fractional and weights.shape[0] >= _NUMPY_FROM
                and weights.shape[0] == len(state.cols) and state.data._t >= 0):
            return _wide_path(state, weights, state.data._t)
        ws = weights.tolist()
        cols: Sequence[int] = state.cols  # range(n_assets)
        if len(ws) != len(cols):
            _fail_length(ws, cols, assets)
    else:
        cols, ws = _columns_and_weights(state, weights, assets)
        if len(ws) != len(cols):
            _fail_length(ws, cols, assets)
        if type(cols) is not range and len(set(cols)) != len(cols):
            _check_finite(state, cols, ws)
            return _one_by_one(self, state, cols, ws, state.data._t)
    if state.fractional:  # the sizing below is the whole-share rule's, inlined
        _check_finite(state, cols, ws)
        return _one_by_one(self, state, cols, ws, state.data._t)
    # A NaN or infinite weight is caught by the loop below: it makes x NaN or infinite,
    # on which trunc() raises before any order is queued.
    t = state.data._t
    if state.pv_t == t:
        fresh = False
    elif t >= 0 and state.lists:
        # RunState.refresh's numbers without copying the positions: ``held`` is only read
        # here and the cached view stays stale, so a later call in this bar refreshes and
        # counts these orders as open.
        fresh = True
        ledger = state.ledger
        rows = state.marks
        prow = rows[t] if rows is not None else state.price[t].tolist()
        pos = ledger.pos
        pv = ledger.cash + sum(map(_mul, pos, prow))  # as RunState.refresh
        if pv != pv:
            pv = ledger.cash + sum([q * p for q, p in zip(pos, prow) if q])
        book = state.book
        held = [q + o for q, o in zip(pos, book.open_amounts())] if book._ids else pos
    else:
        state.refresh()
        fresh = False
    if not fresh:
        pv, prow, held = state.pv, state.prow, state.held
        if len(cols) >= _NUMPY_FROM:
            return _numpy_path(state, cols, ws, t)
    if type(cols) is not range:
        prow = [prow[a] for a in cols]
        held_now = [held[a] for a in cols]
    else:
        held_now = held
    order_assets: list[int] = []
    order_amounts: list[float] = []
    add_asset, add_amount, trunc = order_assets.append, order_amounts.append, _trunc
    snap, neg_snap = SNAP_FRACTION, NEG_SNAP_FRACTION
    try:
        for a, w, p, h in zip(cols, ws, prow, held_now):
            if w:
                if not p > 0:
                    _fail_no_price(state, a, cols, ws)
                x = w * pv / p - h  # as order_target_percent: target * value / price - held
            elif h:
                x = 0.0 - h
            else:
                continue
            # shares.round_shares inlined: the nearest integer within SNAP, else toward zero
            r = trunc(x)  # raises on a NaN or infinite x
            d = x - r
            if d >= snap:
                r += 1
            elif d <= neg_snap:
                r -= 1
            if r:
                add_asset(a)
                add_amount(float(r))
    except (OverflowError, ValueError):
        _check_finite(state, cols, ws)
        raise OrderError(f"order_target_percents: the weights {ws!r} give share counts out of range") from None
    if not order_assets:
        return []
    if not fresh:  # keep the cached view current, as order_target_percent does
        for a, q in zip(order_assets, order_amounts):
            held[a] += q
    n = len(order_assets)
    first = state.book.place_many(order_assets, order_amounts, t)  # refused in initialize()
    return list(range(first, first + n))


def _fail_length(ws: list[float], cols: Sequence[int], assets: Any) -> None:
    raise OrderError(
        f"order_target_percents got {len(ws)} weights for {len(cols)} assets: pass one weight per asset "
        f"({'every asset of the bundle, in column order' if assets is None else 'of assets'})"
    )


def _numpy_path(state: RunState, cols: Sequence[int], ws: list[float], t: int) -> list[int]:
    # Distinct assets (checked by the caller), the cached per-bar view valid.
    idx = np.asarray(cols, dtype=np.int64)
    w = np.asarray(ws, dtype=np.float64)
    prices = state.price[t][idx] if t >= 0 else np.full(idx.shape[0], np.nan)
    return _size_and_place(state, idx, w, prices, np.asarray(state.held)[idx], t, cols, ws)


def _wide_path(state: RunState, w: np.ndarray, t: int) -> list[int]:
    # One weight per asset column, a wide ledger, t >= 0: the per-bar view as arrays when stale.
    if state.pv_t != t:
        state.refresh_wide()
    held = state.held
    return _size_and_place(state, None, w, state.price[t], held if type(held) is np.ndarray else np.asarray(held),
                           t, state.cols, None)


def _size_and_place(state: RunState, idx: np.ndarray | None, w: np.ndarray, prices: np.ndarray, held_now: np.ndarray,
                    t: int, cols: Sequence[int], ws: list[float] | None) -> list[int]:
    # The whole-share sizing of order_target_percent per element, in NumPy; ``idx`` None: every column.
    # ``ws`` (the weights as a list, for error messages) is made only when an error is raised.
    need = w != 0
    no_price = need & ~(prices > 0)
    if no_price.any():
        k = int(np.argmax(no_price))
        _fail_no_price(state, k if idx is None else int(idx[k]), cols, w.tolist() if ws is None else ws)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = np.where(need, w * state.pv / np.where(need, prices, 1.0), 0.0) - held_now
    try:
        q = round_shares_array(x)  # raises on a NaN or infinite x, before any order is queued
    except (OverflowError, ValueError):
        ws = w.tolist() if ws is None else ws
        _check_finite(state, cols, ws)
        raise OrderError(f"order_target_percents: the weights {ws!r} give share counts out of range") from None
    nz = np.flatnonzero(q)
    if not nz.shape[0]:
        return []
    cols_nz = nz if idx is None else idx[nz]
    q_nz = q[nz]
    held = state.held
    if type(held) is np.ndarray:
        held[cols_nz] += q_nz  # distinct columns: the per-order additions, at once
    else:
        for a, amount in zip(cols_nz.tolist(), q_nz.tolist()):
            held[a] += amount
    n = nz.shape[0]
    first = state.book.place_many(cols_nz.tolist(), q_nz.tolist(), t)  # refused in initialize()
    return list(range(first, first + n))


def _one_by_one(self: Any, state: RunState, cols: list[int], ws: list[float], t: int) -> list[int]:
    # An asset listed twice: each entry must see the orders of those before it, as the
    # per-asset calls do. Prices are checked first so that a failing call places nothing.
    if state.pv_t != t:
        state.refresh()
    for a, w in zip(cols, ws):
        if w and not state.prow[a] > 0:
            _fail_no_price(state, a, cols, ws)
    assets = state.assets
    order_target_percent = self.order_target_percent
    ids = [order_target_percent(assets[a], w) for a, w in zip(cols, ws)]
    return [i for i in ids if i is not None]


def _columns_and_weights(state: RunState, weights: Any,
                         assets: Sequence[Asset | str] | None) -> tuple[Sequence[int], list[float]]:
    if isinstance(weights, Mapping) or (hasattr(weights, "to_numpy") and hasattr(weights, "index")
                                        and not callable(weights.index)):
        # {asset: weight}, or a pandas Series indexed by asset
        if assets is not None:
            raise OrderError("order_target_percents: weights keyed by asset already name the assets; drop assets=")
        if isinstance(weights, Mapping):
            return _resolve(state, list(weights.keys())), _floats(list(weights.values()))
        return _resolve(state, list(weights.index)), _floats(weights.to_numpy())
    cols = range(len(state.assets)) if assets is None else _resolve(state, assets)
    return cols, _floats(weights)


def _resolve(state: RunState, assets: Any) -> list[int]:
    if isinstance(assets, (str, Asset)) or not hasattr(assets, "__iter__"):
        raise OrderError(f"order_target_percents needs a sequence of assets, got {assets!r}")
    return [a if type(a) is Asset else state.resolve(a) for a in assets]


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


def _check_finite(state: RunState, cols: Sequence[int], ws: list[float]) -> None:
    for a, w in zip(cols, ws):
        if not math.isfinite(w):
            raise OrderError(
                f"order_target_percents weight for {state.assets[a].symbol} must be finite, got {w!r} "
                "(a NaN signal? check your indicator's warm-up)"
            )


def _fail_no_price(state: RunState, a: int, cols: Sequence[int], ws: list[float]) -> None:
    _check_finite(state, cols, ws)  # a non-finite weight is the problem to report first
    state.price_now(state.assets[a])  # raises OrderError naming the asset and the bar
    raise AssertionError("unreachable")
