"""ArrayCache bounds and accounting, rolling_mean against NumPy, and run_metrics == run_algorithm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybt_ray import load_bundle, run_algorithm
from rustybt_ray.engine import ArrayCache, rolling_mean, run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached


def test_hits_misses_and_byte_bound_eviction():
    cache = ArrayCache(max_bytes=3 * 800, max_entries=100)
    calls = []

    def make(i):
        def compute():
            calls.append(i)
            return np.full(100, float(i))  # 800 bytes
        return compute

    for i in range(3):
        cache.get_or_compute(i, make(i))
    assert cache.nbytes == 2400 and len(cache) == 3
    cache.get_or_compute(0, make(0))  # hit, and 0 becomes most recently used
    cache.get_or_compute(3, make(3))  # evicts 1, the least recently used
    assert cache.nbytes <= 2400 and len(cache) == 3
    cache.get_or_compute(1, make(1))  # recomputed
    assert calls == [0, 1, 2, 3, 1]
    s = cache.stats()
    assert (s["hits"], s["misses"], s["evictions"]) == (1, 5, 2)
    assert s["hit_rate"] == pytest.approx(1 / 6)


def test_entry_bound_oversize_and_disabled():
    cache = ArrayCache(max_bytes=10**9, max_entries=2)
    for i in range(5):
        cache.get_or_compute(i, lambda: np.zeros(4))
    assert len(cache) == 2 and cache.stats()["evictions"] == 3
    small = ArrayCache(max_bytes=10)
    out = small.get_or_compute("big", lambda: np.zeros(100))
    assert out.shape == (100,) and len(small) == 0
    off = ArrayCache(enabled=False)
    off.get_or_compute("k", lambda: np.zeros(3))
    off.get_or_compute("k", lambda: np.zeros(3))
    assert len(off) == 0 and off.stats()["misses"] == 2


def test_cached_arrays_are_read_only():
    cache = ArrayCache()
    a = cache.get_or_compute("x", lambda: np.arange(5.0))
    with pytest.raises(ValueError):
        a[0] = 1.0


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=1, max_value=12),
    st.lists(st.one_of(st.floats(-100, 100), st.just(float("nan"))), min_size=1, max_size=40),
)
def test_rolling_mean_matches_window_means(window, values):
    v = np.array(values).reshape(-1, 1)
    got = rolling_mean(v, window)
    for t in range(v.shape[0]):
        if t + 1 < window:
            assert np.isnan(got[t, 0])
        else:
            expected = v[t - window + 1 : t + 1, 0].mean()
            if np.isnan(expected):
                assert np.isnan(got[t, 0])
            else:
                assert got[t, 0] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_run_metrics_equals_run_algorithm_and_cached_variant_agrees():
    b = load_bundle("demo")
    full = run_algorithm(SmaCrossover, b, "2015-01-01", "2019-12-31", params={"fast": 15, "slow": 60})
    metrics, returns = run_metrics(SmaCrossover, b, "2015-01-01", "2019-12-31", params={"fast": 15, "slow": 60},
                                   with_returns=True)
    assert metrics == full.metrics
    np.testing.assert_array_equal(returns, full.returns)
    cache = ArrayCache()
    cached, _ = run_metrics(SmaCrossoverCached, b, "2015-01-01", "2019-12-31", params={"fast": 15, "slow": 60},
                            cache=cache)
    assert cached["final_value"] == pytest.approx(full.final_value, rel=1e-9)
    assert cached["n_transactions"] == full.metrics["n_transactions"]
    assert cache.stats()["misses"] == 2
    run_metrics(SmaCrossoverCached, b, "2015-01-01", "2019-12-31", params={"fast": 15, "slow": 80}, cache=cache)
    assert cache.stats()["hits"] == 1  # the fast=15 average is shared
