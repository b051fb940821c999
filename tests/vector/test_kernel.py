"""The kernel's own rules: waiting orders, shorts, batches, errors, parameters, no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest
from vector_testkit import (
    COMMISSIONS,
    SLIPPAGES,
    assert_same,
    event_run,
    Zigzag,
    random_bundle,
    vector_run,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.errors import OrderError, RustyBTError, StrategyError, WeightsError
from rustybt_ray.examples.mean_reversion import MeanReversionVector
from rustybt_ray.examples.momentum import MomentumVector
from rustybt_ray.examples.sma_crossover import SmaCrossoverCached, SmaCrossoverVector
from rustybt_ray.vector import VectorStrategy, run_vector, run_vector_batch, simulate_vector


def _gap_bundle() -> Bundle:
    b = random_bundle(7, 40, 3, [0, 3, 0], 0.0)
    vals = b.values[:5].copy()
    vals[:, 10:14, 1] = np.nan  # asset 1 has no bar on bars 10..13: its orders wait
    return Bundle("gap", "1d", b.calendar, b.symbols, vals)


@pytest.mark.parametrize("fill_price", ["open", "close"])
@pytest.mark.parametrize("commission", sorted(COMMISSIONS))
def test_waiting_orders_fill_as_their_own_orders(commission, fill_price):
    b = _gap_bundle()
    costs = {"commission": COMMISSIONS[commission](), "slippage": SLIPPAGES["fixed_bps"](), "fill_price": fill_price}
    ev = event_run(Zigzag, b, **costs)
    assert_same(ev, vector_run(Zigzag, b, **costs))
    tx = ev[1]
    assert not np.any((tx.asset == 1) & (tx.bar >= 10) & (tx.bar <= 13))
    assert np.sum((tx.asset == 1) & (tx.bar == 14)) >= 2  # several waiting orders fill at the next bar
    assert (tx.amount < 0).any() and (tx.amount > 0).any()  # shorts and longs


def test_batch_equals_single_runs(demo_bundle):
    grid = [{"fast": f, "slow": s} for f in (5, 10, 20) for s in (30, 60)]
    runs = simulate_vector(SmaCrossoverVector, demo_bundle, "2015-01-01", None, 1e6, grid)
    for p, r in zip(grid, runs):
        one = simulate_vector(SmaCrossoverVector, demo_bundle, "2015-01-01", None, 1e6, [p])[0]
        np.testing.assert_array_equal(r.value, one.value)
        np.testing.assert_array_equal(r.transactions.amount, one.transactions.amount)
        assert r.params == {"fast": p["fast"], "slow": p["slow"]}
    batched = run_vector_batch(SmaCrossoverVector, demo_bundle, "2015-01-01", None, 1e6, grid, batch_size=4,
                               with_returns=True)
    assert len(batched) == len(grid)
    for p, (m, rets) in zip(grid, batched):
        ref, ref_rets = run_metrics(SmaCrossoverCached, demo_bundle, "2015-01-01", None, 1e6, p, with_returns=True)
        assert m.keys() == ref.keys()
        for k in ref:
            assert m[k] == pytest.approx(ref[k], rel=1e-9, nan_ok=True), k
        np.testing.assert_allclose(rets, ref_rets, rtol=1e-9, atol=1e-15)


def test_run_vector_is_run_metrics(demo_bundle):
    m, r = run_vector(MomentumVector, demo_bundle, with_returns=True)
    assert r is not None and r.shape == (demo_bundle.calendar.shape[0],)
    assert m["n_transactions"] > 0
    assert run_vector(MomentumVector, demo_bundle)[1] is None


def test_parameters_are_pinned_and_checked(demo_bundle):
    assert MeanReversionVector.parameters() == {"window": 20, "entry": 1.5, "exit_band": 0.25}
    run = simulate_vector(MeanReversionVector, demo_bundle, params_list=[{"window": 10}])[0]
    assert run.params == {"window": 10, "entry": 1.5, "exit_band": 0.25}
    with pytest.raises(StrategyError, match="has no parameter 'windw'"):
        run_vector(MeanReversionVector, demo_bundle, params={"windw": 10})
    with pytest.raises(StrategyError, match="would hide"):
        run_vector(MeanReversionVector, demo_bundle, params={"sma": 10})
    with pytest.raises(StrategyError, match="VectorStrategy subclass"):
        run_vector(SmaCrossoverCached, demo_bundle)


class WrongShape(VectorStrategy):
    def weights(self) -> np.ndarray:
        return np.zeros((3, 2))


class Infinite(VectorStrategy):
    def weights(self) -> np.ndarray:
        w = np.zeros(self.close.shape)
        w[5, 1] = np.inf
        return w


class BeforeListing(VectorStrategy):
    def weights(self) -> np.ndarray:
        return np.full(self.close.shape, 0.1)


def test_errors_name_the_problem(demo_bundle):
    with pytest.raises(WeightsError, match=r"returned shape \(3, 2\); it must be \(bars, assets\)"):
        run_vector(WrongShape, demo_bundle)
    with pytest.raises(WeightsError, match="infinite for"):
        run_vector(Infinite, demo_bundle)
    b = random_bundle(1, 30, 2, [0, 10], 0.0)
    with pytest.raises(OrderError, match="S1 has no price"):
        run_vector(BeforeListing, b)
    with pytest.raises(OrderError, match="S1 has no price"):  # the event engine refuses it alike
        event_run(BeforeListing, b)
    assert issubclass(WeightsError, RustyBTError)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(5, 55),
       strategy=st.sampled_from([SmaCrossoverVector, MomentumVector, MeanReversionVector, Zigzag]))
def test_no_look_ahead(seed, cut, strategy):
    """Perturbing every bar after ``cut`` (prices and which bars exist) changes no target and no equity up to it."""
    b = random_bundle(seed, 60, 4, [0, 4, 12, 20], 0.1)
    rng = np.random.default_rng(seed + 1)
    vals = b.values[:5].copy()
    vals[:4, cut + 1 :] *= rng.uniform(0.5, 2.0, vals[:4, cut + 1 :].shape)
    vals[:, cut + 1 :][:, rng.random((60 - cut - 1, 4)) < 0.2] = np.nan
    other = Bundle("perturbed", "1d", b.calendar, b.symbols, vals)
    params = {"fast": 3, "slow": 7} if strategy is SmaCrossoverVector else (
        {"lookback": 5, "top_k": 2} if strategy is MomentumVector else ({"window": 5} if strategy is
                                                                        MeanReversionVector else {}))
    r1 = simulate_vector(strategy, b, params_list=[params])[0]
    r2 = simulate_vector(strategy, other, params_list=[params])[0]
    np.testing.assert_array_equal(r1.weights[: cut + 1], r2.weights[: cut + 1])
    np.testing.assert_array_equal(r1.value[: cut + 1], r2.value[: cut + 1])


def test_default_batch_size_follows_the_memory_budget(demo_bundle, monkeypatch):
    from rustybt_ray.vector import run as run_mod
    from rustybt_ray.vector.budget import trial_bytes

    calls: list[int] = []
    real = run_mod.simulate
    monkeypatch.setattr(run_mod, "simulate", lambda *a, **k: calls.append(a[1].shape[1]) or real(*a, **k))
    i0 = int(np.searchsorted(demo_bundle.calendar, np.datetime64("2020-01-01")))
    n, N, T = demo_bundle.calendar.shape[0] - i0, len(demo_bundle.assets), demo_bundle.calendar.shape[0]
    monkeypatch.setenv("RUSTYBT_KERNEL_MEMORY_MB", repr(3.5 * trial_bytes(n, N, history_bars=T) / 2**20))
    grid = [{"fast": f, "slow": 40} for f in range(3, 10)]
    small = run_vector_batch(SmaCrossoverVector, demo_bundle, "2020-01-01", None, 1e6, grid)
    assert calls == [3, 3, 1]
    monkeypatch.delenv("RUSTYBT_KERNEL_MEMORY_MB")
    calls.clear()
    big = run_vector_batch(SmaCrossoverVector, demo_bundle, "2020-01-01", None, 1e6, grid)
    assert calls == [7]
    assert [m for m, _ in small] == [m for m, _ in big]
