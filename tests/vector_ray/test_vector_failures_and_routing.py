"""A failing strategy fails its own trials only; routing by key cuts the per-actor indicator computations."""

from __future__ import annotations

import ray
import numpy as np
import pytest

from rustybt_ray.errors import StrategyError
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
from rustybt_ray.optimize import GridSearchAlgorithm, ParallelOptimizer
from rustybt_ray.optimize.space import DiscreteParameter, ParameterSpace
from vector_ray_kit import END, START, sma_space

METRICS = ["sharpe", "final_value", "n_transactions", "max_drawdown"]


class Fragile(SmaCrossoverVector):
    """Raises for fast == 10 only."""

    def weights(self) -> np.ndarray:
        if self.fast == 10:
            raise ValueError(f"boom at fast={self.fast}")
        return super().weights()


class RoutedSma(SmaCrossoverVector):
    """SmaCrossoverVector routed by its slow window (the many cached averages)."""

    route_by = "slow"


class BadRoute(SmaCrossoverVector):
    route_by = "sloww"


def test_a_strategy_exception_fails_only_its_own_trials(pool, demo):
    good = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False).run(
        SmaCrossoverVector, demo, START, END)
    opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False)
    res = opt.run(Fragile, demo, START, END)
    assert opt.last_stats.batch_sizes == [8, 8]  # batched: each batch held culprits and innocents
    failed = res.trials.filter(res.trials["status"] == "failed")
    assert sorted(failed["fast"].to_list()) == [10] * 4
    for err in failed["error"].to_list():
        assert "ValueError: boom at fast=10" in err and "Traceback" in err
    ok = res.trials.filter(res.trials["status"] == "complete")
    assert ok.height == 12
    want = good.trials.filter(good.trials["fast"] != 10)
    assert ok.select(["number", *METRICS]).equals(want.select(["number", *METRICS]))


def misses(pool) -> dict[int, int]:
    return {wid: ray.get(a.cache_stats.remote())["misses"] for wid, a in pool.workers.items()}


def run_counting(pool, demo, strategy: type, space: ParameterSpace):
    pool.clear_cache()
    before = misses(pool)
    opt = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, progress=False)
    res = opt.run(strategy, demo, START, END)
    after = misses(pool)
    per_worker = {wid: after[wid] - before[wid] for wid in after}
    # Independently: an actor computes each distinct window of its trials once (fast and slow averages).
    expected = {}
    for wid in per_worker:
        mine = res.trials.filter(res.trials["worker"] == wid)
        expected[wid] = len(set(mine["fast"].to_list()) | set(mine["slow"].to_list()))
    assert per_worker == expected
    return res, per_worker, opt.last_stats


def test_routing_by_key_computes_each_window_once_per_actor(pool, demo):
    space = ParameterSpace([DiscreteParameter("fast", 5, 25, 5), DiscreteParameter("slow", 30, 120, 10)])  # 50
    plain, plain_misses, plain_stats = run_counting(pool, demo, SmaCrossoverVector, space)
    routed, routed_misses, routed_stats = run_counting(pool, demo, RoutedSma, space)
    assert plain_stats.routed_keys == 0 and routed_stats.routed_keys == 10
    # Grid order is fast-major: unrouted halves split the fast values and both actors compute all 10 slow
    # averages; routed, each slow window lives on one actor.
    assert sum(routed_misses.values()) < sum(plain_misses.values())
    for slow, grp in routed.trials.group_by("slow"):
        assert grp["worker"].n_unique() == 1, f"slow={slow} ran on several actors"
    assert routed_stats.batch_sizes == [25, 25]  # routing kept the batches balanced
    cols = ["number", "fast", "slow", *METRICS]
    assert routed.trials.select(cols).equals(plain.trials.select(cols))


def test_a_bad_route_by_fails_before_any_worker_starts(demo):
    opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), n_jobs=2, progress=False)
    with pytest.raises(StrategyError, match="route_by names 'sloww'"):
        opt.run(BadRoute, demo, START, END)
