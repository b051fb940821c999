"""The vectorized kernel and the event-driven engine give the same equity and fills."""

from __future__ import annotations

import pytest
from vector_testkit import COMMISSIONS, SLIPPAGES, assert_same, event_run, random_bundle, vector_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustybt_ray.examples.mean_reversion import MeanReversionEvent, MeanReversionVector
from rustybt_ray.examples.momentum import MomentumEvent, MomentumVector
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached, SmaCrossoverVector

PAIRS = {
    "sma": (SmaCrossoverVector, SmaCrossover),
    "momentum": (MomentumVector, MomentumEvent),
    "mean_reversion": (MeanReversionVector, MeanReversionEvent),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_demo_full_history_default_costs(demo_bundle, name):
    vec, ev = PAIRS[name]
    got = vector_run(vec, demo_bundle)
    assert len(got[1]) > 100  # the strategy really trades
    assert_same(event_run(ev, demo_bundle), got)


def test_demo_sma_equals_cached_form(demo_bundle):
    assert_same(event_run(SmaCrossoverCached, demo_bundle, params={"fast": 20, "slow": 60}),
                vector_run(SmaCrossoverVector, demo_bundle, params={"fast": 20, "slow": 60}))


@pytest.mark.parametrize("engine", ["compiled", "numpy"])
@pytest.mark.parametrize("fill_price", ["open", "close"])
@pytest.mark.parametrize("slippage", sorted(SLIPPAGES))
@pytest.mark.parametrize("commission", sorted(COMMISSIONS))
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_demo_every_cost_model_and_fill_price(demo_bundle, name, commission, slippage, fill_price, engine):
    vec, ev = PAIRS[name]
    costs = {"commission": COMMISSIONS[commission](), "slippage": SLIPPAGES[slippage](), "fill_price": fill_price}
    args = (demo_bundle, "2019-01-01", "2020-06-30", 250_000.0)
    assert_same(event_run(ev, *args, **costs), vector_run(vec, *args, engine=engine, **costs))


@st.composite
def cases(draw):
    N = draw(st.integers(1, 5))
    T = draw(st.integers(25, 90))
    late = [draw(st.integers(0, T // 2)) for _ in range(N)]
    name = draw(st.sampled_from(sorted(PAIRS)))
    if name == "sma":
        fast = draw(st.integers(1, 6))
        params = {"fast": fast, "slow": draw(st.integers(fast + 1, 12))}
    elif name == "momentum":
        params = {"lookback": draw(st.integers(1, 10)), "top_k": draw(st.integers(1, 3))}
    else:
        params = {"window": draw(st.integers(2, 8)), "entry": draw(st.floats(0.3, 1.5)),
                  "exit_band": draw(st.floats(0.05, 0.3))}
    return {
        "seed": draw(st.integers(0, 2**32 - 1)), "T": T, "N": N, "late": late,
        "gap_rate": draw(st.sampled_from([0.0, 0.05, 0.2])), "name": name, "params": params,
        "commission": draw(st.sampled_from(sorted(COMMISSIONS))), "slippage": draw(st.sampled_from(sorted(SLIPPAGES))),
        "fill_price": draw(st.sampled_from(["open", "close"])), "start": draw(st.integers(0, 10)),
        "capital": draw(st.sampled_from([1_000.0, 100_000.0, 1e7])),
        "engine": draw(st.sampled_from(["compiled", "numpy"])),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_data_with_late_listings_and_missing_bars(case):
    b = random_bundle(case["seed"], case["T"], case["N"], case["late"], case["gap_rate"])
    vec, ev = PAIRS[case["name"]]
    costs = {"commission": COMMISSIONS[case["commission"]](), "slippage": SLIPPAGES[case["slippage"]](),
             "fill_price": case["fill_price"]}
    start = b.calendar[case["start"]]
    args = (b, start, None, case["capital"], case["params"])
    got = vector_run(vec, *args, engine=case["engine"], **costs)
    assert_same(event_run(ev, *args, **costs), got)
    # The same weights through the event loop (VectorStrategy's own event form) agree too.
    assert_same(event_run(vec, *args, **costs), got)
