"""Asking ahead in a background thread (expensive samplers) loses no trial and leaves nothing running."""

from __future__ import annotations

import optuna
import polars as pl

from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import DiscreteParameter, OptimizationConfig, ParallelOptimizer, ParameterSpace
from rustybt_ray.optimize.optuna_search import OptunaSearch


def test_prefetched_tpe_sweep_runs_each_trial_once_and_closes_the_study(ray_session):
    space = ParameterSpace([DiscreteParameter("fast", 2, 40, 1), DiscreteParameter("slow", 10, 120, 1)],
                           constraints=["fast < slow"])
    algo = OptunaSearch(space, n_trials=40, seed=3)
    assert algo.prefetch_trials > 0
    opt = ParallelOptimizer(algo, n_jobs=2, progress=False,
                            config=OptimizationConfig(min_batch_seconds=0.01, max_batch_size=3))
    result = opt.run(SmaCrossover, "demo", "2019-01-01", "2020-12-31")
    assert len(result) == 40 and result.n_complete == 40
    assert result.trials["number"].n_unique() == 40
    ran = result.trials.filter(pl.col("attempts") > 0)
    # Every trial sent to a worker had distinct parameters; repeats were answered from the journal.
    assert ran.select(["fast", "slow"]).n_unique() == ran.height == opt.last_stats.trials
    states = {t.state for t in algo.study.trials}
    assert optuna.trial.TrialState.RUNNING not in states  # nothing asked ahead was left dangling
    told = [t for t in algo.study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and "rustybt_ray_not_run" not in t.user_attrs]
    assert len(told) == 40
    best = max(t.value for t in told)
    assert best == result.best["metrics"]["sharpe"]
