"""The compiled kernel against the NumPy kernel (the reference) and NumPy's own sums; its fallbacks and cache."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from vector_testkit import (
    COMMISSIONS,
    FILL_FIELDS,
    SLIPPAGES,
    assert_same,
    event_run,
    Zigzag,
    random_bundle,
    vector_run,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine import PerShare, run_metrics
from rustybt_ray.engine.array_cache import ArrayCache
from rustybt_ray.engine.costs import FixedBasisPointsSlippage, SlippageModel
from rustybt_ray.errors import WeightsError
from rustybt_ray.examples.mean_reversion import MeanReversionVector
from rustybt_ray.examples.momentum import MomentumVector
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
from rustybt_ray.metrics import round_trips
from rustybt_ray.vector import run_vector_batch, simulate
from rustybt_ray.vector.compiled import QUEUE_DEPTH, np_sum
from rustybt_ray.vector.run import _weights_stack

STRATEGIES = {"sma": SmaCrossoverVector, "momentum": MomentumVector, "mean_reversion": MeanReversionVector}


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 700), elements=st.floats(-1e12, 1e12, allow_nan=False)))
def test_np_sum_is_numpys_sum(a):
    assert np_sum(a) == a.sum()


def _both(b, strategy, params_list, start, costs, capital=100_000.0):
    i0 = int(np.searchsorted(b.calendar, start))
    w = _weights_stack(strategy, b, i0, b.calendar.shape[0], params_list, ArrayCache())
    args = (b, w, i0, b.calendar.shape[0], capital, costs["commission"], costs["slippage"], costs["fill_price"])
    return simulate(*args, engine="compiled"), simulate(*args, engine="numpy"), simulate(*args, engine="compiled",
                                                                                         record_fills=False)


@st.composite
def batches(draw):
    N = draw(st.integers(1, 20))  # past 8 and 16: NumPy's pairwise blocks in the per-bar sums
    T = draw(st.integers(20, 80))
    name = draw(st.sampled_from([*sorted(STRATEGIES), "zigzag"]))
    K = draw(st.integers(1, 4))
    if name == "sma":
        params = [{"fast": draw(st.integers(1, 5)), "slow": draw(st.integers(6, 12))} for _ in range(K)]
    elif name == "momentum":
        params = [{"lookback": draw(st.integers(1, 8)), "top_k": draw(st.integers(1, 3))} for _ in range(K)]
    elif name == "mean_reversion":
        params = [{"window": draw(st.integers(2, 8)), "entry": draw(st.floats(0.3, 1.5))} for _ in range(K)]
    else:
        params = [{"scale": draw(st.floats(-2.0, 2.0))} for _ in range(K)]
    return {
        "seed": draw(st.integers(0, 2**32 - 1)), "T": T, "N": N,
        "late": [draw(st.integers(0, T // 2)) for _ in range(N)],
        "gap_rate": draw(st.sampled_from([0.0, 0.05, 0.2])), "name": name, "params": params,
        "commission": draw(st.sampled_from(sorted(COMMISSIONS))), "slippage": draw(st.sampled_from(sorted(SLIPPAGES))),
        "fill_price": draw(st.sampled_from(["open", "close"])), "start": draw(st.integers(0, 10)),
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_compiled_equals_numpy_kernel_bit_for_bit(case):
    b = random_bundle(case["seed"], case["T"], case["N"], case["late"], case["gap_rate"])
    strategy = Zigzag if case["name"] == "zigzag" else STRATEGIES[case["name"]]
    costs = {"commission": COMMISSIONS[case["commission"]](), "slippage": SLIPPAGES[case["slippage"]](),
             "fill_price": case["fill_price"]}
    comp, ref, summary = _both(b, strategy, case["params"], b.calendar[case["start"]], costs)
    assert comp.compiled and summary.compiled and not ref.compiled
    np.testing.assert_array_equal(comp.value, ref.value)
    np.testing.assert_array_equal(comp.gross, ref.gross)
    np.testing.assert_array_equal(summary.value, ref.value)
    i0 = case["start"]
    n = b.calendar.shape[0] - i0
    for k, tx in enumerate(ref.fills):
        for f in FILL_FIELDS:
            np.testing.assert_array_equal(getattr(comp.fills[k], f), getattr(tx, f), err_msg=f)
        # the summary is what backtest_metrics computes from the fills
        trips = round_trips(tx.bar, tx.asset, tx.amount, tx.price, tx.commission)
        got = summary.trips[k]
        for f in ("asset", "open_bar", "close_bar", "pnl", "direction"):
            np.testing.assert_array_equal(getattr(got, f), getattr(trips, f), err_msg=f)
        assert got.n_open == trips.n_open
        traded = np.bincount(tx.bar - i0, weights=np.abs(tx.amount * tx.price), minlength=n) if len(tx) else 0.0
        np.testing.assert_array_equal(summary.traded[k], traded)
        assert summary.n_transactions[k] == len(tx)


@pytest.mark.parametrize("commission", sorted(COMMISSIONS))
def test_batch_metrics_are_the_numpy_kernels(demo_bundle, commission):
    grid = [{"fast": f, "slow": s} for f in (3, 10) for s in (20, 50)]
    kw = {"commission": COMMISSIONS[commission](), "slippage": FixedBasisPointsSlippage(4.0), "with_returns": True}
    comp = run_vector_batch(SmaCrossoverVector, demo_bundle, "2012-01-01", None, 1e6, grid, engine="compiled", **kw)
    ref = run_vector_batch(SmaCrossoverVector, demo_bundle, "2012-01-01", None, 1e6, grid, engine="numpy", **kw)
    for (m1, r1), (m2, r2) in zip(comp, ref):
        assert m1.keys() == m2.keys()
        for key in m1:
            assert m1[key] == m2[key] or (np.isnan(m1[key]) and np.isnan(m2[key])), key
        np.testing.assert_array_equal(r1, r2)
    assert comp[0][0]["n_trades"] > 0


def _long_gap_bundle(gap: int):
    b = random_bundle(11, 60, 3, [0, 0, 0], 0.0)
    vals = b.values[:5].copy()  # OHLCV; the marks are derived again
    vals[:, 10:10 + gap, 2] = np.nan  # asset 2 has no bar for `gap` bars: an order waits per bar
    return Bundle("gap", "1d", b.calendar, b.symbols, vals)


@pytest.mark.parametrize("gap", [3, QUEUE_DEPTH + 4])
def test_deep_order_queues_fall_back_to_numpy_and_stay_equal(gap):
    b = _long_gap_bundle(gap)
    costs = {"commission": PerShare(0.01, 1.0), "slippage": FixedBasisPointsSlippage(5.0), "fill_price": "open"}
    comp, _, _ = _both(b, Zigzag, [None], b.calendar[0], costs)
    assert comp.compiled == (gap < QUEUE_DEPTH)
    assert_same(event_run(Zigzag, b, **costs), vector_run(Zigzag, b, **costs))
    m, _ = run_vector_batch(Zigzag, b, **costs)[0]
    ref, _ = run_metrics(Zigzag, b, **costs)
    assert m["final_value"] == pytest.approx(ref["final_value"], rel=1e-12)


class HalfSpread(SlippageModel):
    """A cost model written in Python: the compiled kernel cannot call it."""

    def fill_price(self, amount, price):
        return price * (1.0 + 0.0007 * np.sign(amount))


def test_python_cost_models_take_the_numpy_kernel(demo_bundle):
    costs = {"commission": PerShare(0.002), "slippage": HalfSpread(), "fill_price": "open"}
    args = (demo_bundle, "2020-01-01", "2021-01-01")
    assert_same(event_run(SmaCrossoverVector, *args, **costs), vector_run(SmaCrossoverVector, *args, **costs))
    with pytest.raises(WeightsError, match="engine='numpy'"):
        vector_run(SmaCrossoverVector, *args, engine="compiled", **costs)
    with pytest.raises(WeightsError, match="engine must be"):
        vector_run(SmaCrossoverVector, *args, engine="gpu", **costs)


def test_compiled_code_is_cached_on_disk(tmp_path):
    script = ("from rustybt_ray.vector import compiled as c; import numpy as np\n"
              "c.simulate_compiled(np.zeros((3, 1, 2)), np.ones((3, 2)), np.ones((3, 2)), 1e5, (1., 1., 0., 0., 0.), "
              "False)\nprint(sum(c._kernel.stats.cache_hits.values()), sum(c._kernel.stats.cache_misses.values()))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                           timeout=300).stdout.split() for _ in range(2)]
    hits, misses = (int(x) for x in runs[1])
    assert hits >= 1 and misses == 0, runs
