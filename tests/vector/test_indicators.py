"""Indicators against plain NumPy references, window by window; and served from the cache."""

from __future__ import annotations

import numpy as np
import pytest
from vector_testkit import random_bundle

from rustybt_ray.engine import ArrayCache
from rustybt_ray.errors import StrategyError
from rustybt_ray.vector import VectorStrategy, indicators as ind, simulate_vector


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (120, 4)), axis=0))
    x[:15, 2] = np.nan  # a late listing
    x[50, 1] = np.nan  # a missing bar
    return x


def windows(x: np.ndarray, n: int):
    for t in range(x.shape[0]):
        yield t, (x[t - n + 1 : t + 1] if t >= n - 1 else None)


def ref_rolling(x: np.ndarray, n: int, fn) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for t, w in windows(x, n):
        if w is not None:
            out[t] = fn(w)
    return out


def same(a: np.ndarray, b: np.ndarray, rtol: float = 1e-12) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_rolling_family(data, n):
    same(ind.sma(data, n), ref_rolling(data, n, lambda w: w.mean(axis=0)))
    # the sequential forms are bit for bit those of a history window's mean/std
    np.testing.assert_array_equal(ind.rolling_mean_seq(data, n), ref_rolling(data, n, lambda w: w.mean(axis=0)))
    np.testing.assert_array_equal(ind.rolling_std(data, n), ref_rolling(data, n, lambda w: w.std(axis=0)))
    same(ind.rolling_min(data, n), ref_rolling(data, n, lambda w: w.min(axis=0)))
    same(ind.rolling_max(data, n), ref_rolling(data, n, lambda w: w.max(axis=0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ref_rolling(data, n, lambda w: (w[-1] - w.mean(axis=0)) / w.std(axis=0))
    np.testing.assert_array_equal(ind.zscore(data, n), z)


@pytest.mark.parametrize("n", [1, 5, 20])
def test_returns(data, n):
    ref = np.full(data.shape, np.nan)
    ref[n:] = data[n:] / data[:-n] - 1
    same(ind.returns(data, n), ref)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_ema(data, n):
    alpha = 2 / (n + 1)
    ref = np.full(data.shape, np.nan)
    for a in range(data.shape[1]):
        run, state = [], np.nan
        for t, x in enumerate(data[:, a]):
            if np.isnan(x):
                run, state = [], np.nan
                continue
            run.append(x)
            if len(run) == n:
                state = sum(run) / n
            elif len(run) > n:
                state = alpha * x + (1 - alpha) * state
            ref[t, a] = state if len(run) >= n else np.nan
    same(ind.ema(data, n), ref, rtol=1e-10)


def test_rsi(data):
    n = 14
    ref = np.full(data.shape, np.nan)
    for a in range(data.shape[1]):
        for t in range(n, data.shape[0]):
            d = np.diff(data[t - n : t + 1, a])
            if np.isnan(d).any():
                continue
            g, lo = np.maximum(d, 0).mean(), np.maximum(-d, 0).mean()
            ref[t, a] = 100.0 if lo == 0 else 100 - 100 / (1 + g / lo)
    got = ind.rsi(data, n)
    same(got, ref, rtol=1e-9)
    assert np.nanmin(got) >= 0 and np.nanmax(got) <= 100


def test_crossover_and_rank(data):
    a, b = ind.sma(data, 3), ind.sma(data, 10)
    up, down = ind.crossover(a, b), ind.crossunder(a, b)
    for t in range(1, data.shape[0]):
        for j in range(data.shape[1]):
            assert up[t, j] == (a[t, j] > b[t, j] and a[t - 1, j] <= b[t - 1, j])
            assert down[t, j] == (a[t, j] < b[t, j] and a[t - 1, j] >= b[t - 1, j])
    x = np.array([[3.0, 1.0, np.nan, 3.0], [np.nan, np.nan, np.nan, np.nan], [0.0, -0.0, 2.0, -1.0]])
    np.testing.assert_array_equal(ind.rank(x), [[1, 3, np.nan, 2], [np.nan] * 4, [2, 3, 1, 4]])
    np.testing.assert_array_equal(ind.rank(x, ascending=True), [[2, 1, np.nan, 3], [np.nan] * 4, [2, 3, 4, 1]])


def test_trailing_by_construction(data):
    cut = 60
    changed = data.copy()
    changed[cut + 1 :] *= 1.7
    for fn in (ind.sma, ind.ema, ind.rolling_std, ind.rolling_min, ind.rolling_max, ind.returns, ind.rsi,
               ind.zscore):
        np.testing.assert_array_equal(fn(data, 5)[: cut + 1], fn(changed, 5)[: cut + 1], err_msg=fn.__name__)


def test_bad_windows():
    with pytest.raises(StrategyError, match="window must be an int >= 1"):
        ind.sma(np.ones((5, 2)), 0)
    with pytest.raises(StrategyError, match=r"needs a \(T,\) or \(T, N\) array"):
        ind.ema(np.ones((2, 2, 2)), 3)


class Indicators(VectorStrategy):
    n = 5

    def weights(self) -> np.ndarray:
        self.seen = [self.sma(self.n), self.sma(self.n), self.ema(self.n), self.rsi(self.n)]
        return np.zeros(self.close.shape)


def test_strategy_indicators_come_from_the_cache():
    b = random_bundle(0, 40, 3, [0, 0, 0], 0.0)
    cache = ArrayCache()
    simulate_vector(Indicators, b, params_list=[{}, {}], cache=cache)
    assert cache.misses == 3 and cache.hits == 5  # 8 lookups, each indicator computed once
    np.testing.assert_array_equal(cache.get_or_compute((b.version, ("vector", "sma", 5, "close")), lambda: None),
                                  ind.sma(b.close, 5))
