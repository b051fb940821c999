"""OptunaSearch under ParallelOptimizer on a real local Ray: trials in flight on 2 workers, results told back."""

from __future__ import annotations

import math

from optuna.trial import TrialState

from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import DiscreteParameter, OptunaSearch, ParallelOptimizer, ParameterSpace
from rustybt_ray.optimize.optuna_search import NOT_RUN_ATTR


def test_optuna_search_runs_under_the_parallel_optimizer(ray_session):
    space = ParameterSpace(
        [DiscreteParameter("fast", 5, 30, 5), DiscreteParameter("slow", 20, 80, 10)],
        constraints=["fast < slow"],
    )
    algo = OptunaSearch(space, n_trials=12, seed=0)
    result = ParallelOptimizer(algo, n_jobs=2, progress=False).run(
        SmaCrossover, "demo", "2020-01-01", "2021-12-31", objective="sharpe"
    )
    assert len(result) == 12 and result.n_complete == 12
    table = result.trials
    assert all(f < s for f, s in zip(table["fast"], table["slow"]))
    sharpe = [v for v in table["sharpe"] if v is not None and not math.isnan(v)]
    assert result.best["metrics"]["sharpe"] == max(sharpe)
    # The study saw every result: 12 counted complete trials, the same best value.
    counted = [t for t in algo.study.trials if NOT_RUN_ATTR not in t.user_attrs]
    assert len(counted) == 12 and all(t.state == TrialState.COMPLETE for t in counted)
    assert algo.study.best_value == max(sharpe)
