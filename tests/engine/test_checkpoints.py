"""Runs judged at checkpoints (early stopping): checkpoint bars, identical numbers when not stopped, partial metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rustybt_ray import load_bundle
from rustybt_ray.engine import TrialPruned, checkpoint_bars, run_metrics
from rustybt_ray.errors import StrategyError
from rustybt_ray.examples.sma_crossover import SmaCrossover

RETURNS_BASED = ("total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown",
                 "max_drawdown_duration", "calmar", "final_value", "exposure", "avg_gross_leverage")


@pytest.fixture(scope="module")
def demo():
    return load_bundle("demo")


def test_checkpoints_are_the_first_bars_of_each_new_year(demo):
    cal = demo.calendar
    i0, i1 = demo.index_range("2010-03-01", "2013-06-30")
    ends = checkpoint_bars(cal, i0, i1, every="year")
    assert [str(cal[e])[:4] for e in ends] == ["2011", "2012", "2013"]
    for e in ends:  # the bar before each end is the last bar of a year
        assert str(cal[e - 1])[:4] != str(cal[e])[:4]
    assert checkpoint_bars(cal, i0, i0 + 10, every=4) == [i0 + 4, i0 + 8]
    assert checkpoint_bars(cal, i0, i0 + 8, every=4) == [i0 + 4]  # the run's end is not a checkpoint
    # "auto": after years 1, 2, 4, 8, ... of the run.
    j0, j1 = demo.index_range("2005-01-01", "2024-12-31")
    years = checkpoint_bars(cal, j0, j1, every="year")
    assert checkpoint_bars(cal, j0, j1) == [years[k - 1] for k in (1, 2, 4, 8, 16)]
    assert checkpoint_bars(cal, j0, j1, every="auto") == checkpoint_bars(cal, j0, j1)
    for bad in (0, -3, "month", True, 2.5):
        with pytest.raises(StrategyError, match="checkpoint_every"):
            checkpoint_bars(cal, i0, i1, every=bad)


@pytest.mark.parametrize("params", [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 50}, {"fast": 30, "slow": 120}])
def test_a_run_never_stopped_gives_the_same_numbers(demo, params):
    plain, r0 = run_metrics(SmaCrossover, demo, "2008-01-01", "2016-12-31", params=params, with_returns=True)
    steps = []
    judged, r1 = run_metrics(SmaCrossover, demo, "2008-01-01", "2016-12-31", params=params, with_returns=True,
                             checkpoint=lambda step, m: steps.append(step) and False, checkpoint_every="year")
    assert judged == plain
    assert np.array_equal(r0, r1)
    assert steps == list(range(1, 9))  # 2009 .. 2016 begin a new year


def test_a_stopped_run_reports_the_metrics_of_the_bars_it_ran(demo):
    seen = {}

    def stop_at_third(step: int, m: dict) -> bool:
        seen[step] = m["sharpe"]
        return step == 3

    with pytest.raises(TrialPruned) as info:
        run_metrics(SmaCrossover, demo, "2008-01-01", "2016-12-31", params={"fast": 10, "slow": 50},
                    checkpoint=stop_at_third, checkpoint_every="year")
    pruned = info.value
    assert pruned.step == 3 and sorted(seen) == [1, 2, 3]
    first = demo.index_range("2008-01-01", None)[0]
    last_bar = demo.calendar[first + pruned.bars - 1]
    assert str(last_bar)[:10] == "2010-12-31"
    short, _ = run_metrics(SmaCrossover, demo, "2008-01-01", last_bar, params={"fast": 10, "slow": 50})
    for k in RETURNS_BASED:
        assert pruned.metrics[k] == short[k] or (math.isnan(pruned.metrics[k]) and math.isnan(short[k])), k
    assert math.isnan(pruned.metrics["n_trades"]) and math.isnan(pruned.metrics["n_transactions"])
