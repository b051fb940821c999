"""Trailing indicators on whole-history ``(T, N)`` arrays (bars down, assets across).

Every function here is trailing by construction: row ``t`` of the output depends on
rows ``<= t`` of the input only, so a strategy built from them cannot look ahead.
NaN propagates: a window that holds a NaN (an asset without a bar, or before its
listing) gives NaN, as the mean of a ``data.history`` window with a NaN does. Windows
shorter than ``window`` bars at the start are NaN.

The rolling mean/std used by :func:`rolling_std` and :func:`zscore` add the window's
rows one after the other, the order ``window.mean(axis=0)`` / ``window.std(axis=0)``
use on a ``data.history`` array, so an event-driven strategy written with ``history``
gets bit-for-bit the same numbers (a threshold test then decides alike in both).
:func:`sma` is :func:`rustybt_ray.engine.array_cache.rolling_mean` (a cumulative sum,
O(T * N) whatever the window), the function ``SmaCrossoverCached`` uses.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rustybt_ray.engine.array_cache import rolling_mean
from rustybt_ray.errors import StrategyError

__all__ = [
    "crossover", "crossunder", "ema", "rank", "returns", "rolling_max", "rolling_mean_seq", "rolling_min",
    "rolling_std", "rsi", "sma", "zscore",
]


def _check(values: np.ndarray, window: int, what: str) -> np.ndarray:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise StrategyError(f"{what} window must be an int >= 1, got {window!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2):
        raise StrategyError(f"{what} needs a (T,) or (T, N) array, got shape {v.shape}")
    return v


def sma(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing ``window``-bar simple moving average (NaN-propagating)."""
    return rolling_mean(_check(values, window, "sma"), int(window))


def rolling_mean_seq(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean adding the window's rows in order (equal to ``history(...).mean(axis=0)`` bit for bit)."""
    v = _check(values, window, "rolling_mean_seq")
    n = int(window)
    out = np.full(v.shape, np.nan)
    m = v.shape[0] - n + 1
    if m <= 0:
        return out
    acc = v[0:m].copy()
    for j in range(1, n):
        acc += v[j : j + m]
    out[n - 1 :] = acc / n
    return out


def rolling_std(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing population standard deviation (``ddof=0``, as ``np.std``) over ``window`` bars."""
    v = _check(values, window, "rolling_std")
    n = int(window)
    out = np.full(v.shape, np.nan)
    m = v.shape[0] - n + 1
    if m <= 0:
        return out
    mean = rolling_mean_seq(v, n)[n - 1 :]
    # np.std's arithmetic: sum of squared deviations from the mean, row after row, / n.
    d = v[0:m] - mean
    acc = d * d
    for j in range(1, n):
        d = v[j : j + m] - mean
        acc += d * d
    out[n - 1 :] = np.sqrt(acc / n)
    return out


def zscore(values: np.ndarray, window: int) -> np.ndarray:
    """``(x - mean) / std`` over the trailing ``window`` bars (std ``ddof=0``; ±inf or NaN where std is 0)."""
    v = _check(values, window, "zscore")
    with np.errstate(divide="ignore", invalid="ignore"):
        return (v - rolling_mean_seq(v, window)) / rolling_std(v, window)


def _rolling_reduce(v: np.ndarray, n: int, fn: str) -> np.ndarray:
    out = np.full(v.shape, np.nan)
    if v.shape[0] < n:
        return out
    view = sliding_window_view(v, n, axis=0)  # (T - n + 1, [N,] n), a view: no copy
    out[n - 1 :] = getattr(view, fn)(axis=-1)  # max/min propagate NaN
    return out


def rolling_min(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing ``window``-bar minimum (NaN if the window holds a NaN)."""
    return _rolling_reduce(_check(values, window, "rolling_min"), int(window), "min")


def rolling_max(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing ``window``-bar maximum (NaN if the window holds a NaN)."""
    return _rolling_reduce(_check(values, window, "rolling_max"), int(window), "max")


def returns(values: np.ndarray, window: int = 1) -> np.ndarray:
    """Trailing ``window``-bar simple return ``x[t] / x[t - window] - 1`` (NaN for the first ``window`` rows)."""
    v = _check(values, window, "returns")
    n = int(window)
    out = np.full(v.shape, np.nan)
    if v.shape[0] > n:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[n:] = v[n:] / v[:-n] - 1.0
    return out


def ema(values: np.ndarray, window: int) -> np.ndarray:
    """Exponential moving average, ``alpha = 2 / (window + 1)``, seeded with the SMA of its first ``window`` bars.

    ``ema[t] = alpha * x[t] + (1 - alpha) * ema[t-1]``. A NaN input gives NaN and
    restarts the average: it is seeded again by the SMA of the next ``window`` valid
    bars in a row (an asset's listing, a gap). One pass over bars, vectorized over assets.
    """
    v = _check(values, window, "ema")
    n = int(window)
    alpha = 2.0 / (n + 1.0)
    flat = v.reshape(v.shape[0], -1)
    out = np.full(flat.shape, np.nan)
    state = np.full(flat.shape[1], np.nan)
    run = np.zeros(flat.shape[1], dtype=np.int64)  # valid bars in a row so far
    acc = np.zeros(flat.shape[1])  # their running sum, for the seed
    for t in range(flat.shape[0]):
        x = flat[t]
        ok = ~np.isnan(x)
        run = np.where(ok, run + 1, 0)
        acc = np.where(ok, np.where(run == 1, x, acc + x), 0.0)
        seeded = run > n
        state = np.where(seeded, alpha * x + (1.0 - alpha) * state, np.where(run == n, acc / n, np.nan))
        out[t] = state
    return out.reshape(v.shape)


def rsi(values: np.ndarray, window: int = 14) -> np.ndarray:
    """Relative strength index (Cutler's: simple means of gains and losses over ``window`` changes), 0..100.

    ``100 - 100 / (1 + mean_gain / mean_loss)``; 100 when there were no losses, NaN
    when the window holds a NaN or had no change at all.
    """
    v = _check(values, window, "rsi")
    n = int(window)
    d = np.full(v.shape, np.nan)
    d[1:] = v[1:] - v[:-1]
    gain = rolling_mean(np.where(np.isnan(d), np.nan, np.maximum(d, 0.0)), n)
    loss = rolling_mean(np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0)), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + gain / loss)
    out = np.where((loss == 0) & (gain > 0), 100.0, out)
    return np.where((loss == 0) & (gain == 0), np.nan, out)


def crossover(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True at bar ``t`` where ``a`` crossed above ``b``: ``a[t] > b[t]`` and ``a[t-1] <= b[t-1]``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    out = np.zeros(a.shape, dtype=bool)
    out[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
    return out


def crossunder(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True at bar ``t`` where ``a`` crossed below ``b``: ``a[t] < b[t]`` and ``a[t-1] >= b[t-1]``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    out = np.zeros(a.shape, dtype=bool)
    out[1:] = (a[1:] < b[1:]) & (a[:-1] >= b[:-1])
    return out


def rank(values: np.ndarray, ascending: bool = False) -> np.ndarray:
    """Rank of each asset among the assets of its bar (1 = best; largest first unless ``ascending``).

    NaN values get NaN and do not take a rank. Ties are broken by column order (a
    stable sort), the same order ``np.argsort(-row, kind="stable")`` gives per bar.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise StrategyError(f"rank needs a (T, N) array, got shape {v.shape}")
    key = v if ascending else -v  # NaN sorts last either way
    order = np.argsort(key, axis=1, kind="stable")
    ranks = np.empty(v.shape)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1.0, v.shape[1] + 1.0), v.shape), axis=1)
    return np.where(np.isnan(v), np.nan, ranks)
