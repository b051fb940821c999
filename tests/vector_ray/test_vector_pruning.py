"""Pruning configured on a VectorStrategy sweep: trials run complete, the study still gets the checkpoints.

The kernel computes every bar of every trial of a batch at once, so stopping a trial
early saves nothing; the intermediate values are computed after the fact from the
per-bar equity, at the checkpoints the event path would have judged.
"""

from __future__ import annotations

import math

import optuna
import pytest

from rustybt_ray.engine.run import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
from rustybt_ray.optimize import GridSearchAlgorithm, ParallelOptimizer
from rustybt_ray.optimize.optuna_search import OptunaSearch
from rustybt_ray.optimize.space import DiscreteParameter, ParameterSpace
from vector_ray_kit import END, START, sma_space

WIDE = ParameterSpace([DiscreteParameter("fast", 2, 30, 1), DiscreteParameter("slow", 31, 120, 1)])  # 2581 points


def event_checkpoints(params: dict, every: str | int) -> dict[int, float]:
    """The objective (sharpe) at each checkpoint of the event loop, for a run that is never stopped."""
    seen: dict[int, float] = {}

    def judge(step: int, metrics: dict[str, float]) -> bool:
        seen[step] = metrics["sharpe"]
        return False

    from rustybt_ray.data import load_bundle

    run_metrics(SmaCrossoverVector, load_bundle("demo"), START, END, params=params, checkpoint=judge,
                checkpoint_every=every)
    return seen


def study_of(pool, demo, pruner, every="year", n_trials=12):
    algo = OptunaSearch(WIDE, sampler="random", n_trials=n_trials, seed=11, pruner=pruner)
    res = ParallelOptimizer(algo, pool=pool, progress=False).run(SmaCrossoverVector, demo, START, END,
                                                                 checkpoint_every=every)
    return algo.study, res


@pytest.mark.parametrize("every", ["year", 150])
def test_intermediate_values_are_the_event_paths_and_results_match_no_pruner(pool, demo, every):
    study, res = study_of(pool, demo, "median", every)
    plain_study, plain = study_of(pool, demo, None, every)
    assert res.n_complete == 12 and res.n_pruned == 0
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 12
    for t in done:
        want = event_checkpoints(t.params, every)
        assert want and sorted(t.intermediate_values) == sorted(want)
        for step, v in want.items():
            assert math.isclose(t.intermediate_values[step], v, rel_tol=1e-9, abs_tol=1e-12), (t.params, step)
    # A seeded random sampler proposes the same points either way: the same trials, the same values.
    cols = ["number", "fast", "slow", "sharpe", "final_value", "n_transactions"]
    assert res.trials.select(cols).equals(plain.trials.select(cols))
    assert res.best["params"] == plain.best["params"] and res.best["metrics"] == plain.best["metrics"]
    assert all(not t.intermediate_values for t in plain_study.trials)


def test_tpe_with_a_pruner_completes(pool, demo):
    algo = OptunaSearch(WIDE, sampler="tpe", n_trials=20, seed=2, pruner="median")
    res = ParallelOptimizer(algo, pool=pool, progress=False).run(SmaCrossoverVector, demo, START, END,
                                                                 checkpoint_every="year")
    assert res.n_complete == 20 and res.n_pruned == 0
    trials = algo.study.trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE and len(t.intermediate_values) == 2 for t in trials)
    assert algo.study.best_value == pytest.approx(res.best["metrics"]["sharpe"], rel=1e-12)
    best = res.best["params"]
    m, _ = run_metrics(SmaCrossoverVector, demo, START, END, params=best)
    assert m["sharpe"] == pytest.approx(algo.study.best_value, rel=1e-9)


def test_grid_with_a_pruner_equals_grid_without(pool, demo):
    plain = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False).run(
        SmaCrossoverVector, demo, START, END)
    pruned = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False).run(
        SmaCrossoverVector, demo, START, END, pruner="median", checkpoint_every="year")
    assert pruned.n_complete == 16 and pruned.n_pruned == 0
    cols = ["number", "fast", "slow", "sharpe", "final_value", "n_transactions", "turnover"]
    assert pruned.trials.select(cols).equals(plain.trials.select(cols))
