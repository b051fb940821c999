"""Early stopping reaches trials running in workers: pruned trials stop, complete ones are untouched."""

from __future__ import annotations

import optuna
import pytest

from rustybt_ray import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import DiscreteParameter, OptimizationConfig, ParallelOptimizer, ParameterSpace

START, END = "2008-01-01", "2019-12-31"  # 12 years: 11 checkpoints


class Always(optuna.pruners.BasePruner):
    """Prunes every trial at its first reported value."""

    def prune(self, study, trial) -> bool:
        return True


class Never(optuna.pruners.BasePruner):
    """Never prunes (the checkpoints still run)."""

    def prune(self, study, trial) -> bool:
        return False


def space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 5, 25, 10), DiscreteParameter("slow", 40, 160, 40)])


def sweep(pruner, **kw):
    opt = ParallelOptimizer(space(), n_jobs=2, progress=False,
                            config=OptimizationConfig(min_batch_seconds=0.01, max_batch_size=2))
    # Every year: 11 chances for a (pipelined) decision to reach each trial.
    kw.setdefault("checkpoint_every", "year")
    return opt.run(SmaCrossover, "demo", START, END, objective="sharpe", pruner=pruner, **kw)


def test_a_pruner_that_always_stops_stops_every_trial_early(ray_session):
    result = sweep(Always())
    assert result.n_pruned == len(result) == 12
    demo = load_bundle("demo")
    for row in result.trials.iter_rows(named=True):
        full, _ = run_metrics(SmaCrossover, demo, START, END, params={"fast": row["fast"], "slow": row["slow"]})
        # The decision reached the running trial: it stopped years before the end.
        assert row["final_value"] != full["final_value"]
        assert row["n_trades"] is None or row["n_trades"] != row["n_trades"]  # trade stats are NaN when stopped
    assert result.best is None  # no complete trial to rank


def test_a_pruner_that_never_stops_changes_nothing(ray_session):
    plain = sweep(None)
    judged = sweep(Never())
    assert judged.n_pruned == 0
    cols = ["fast", "slow", "sharpe", "final_value", "n_transactions", "status"]
    assert judged.trials.select(cols).equals(plain.trials.select(cols))


def test_median_pruner_stops_some_trials_and_leaves_complete_ones_exact(ray_session):
    result = sweep(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1), checkpoint_every=252)
    assert 0 < result.n_pruned < len(result)
    demo = load_bundle("demo")
    for row in result.trials.filter(result.trials["status"] == "complete").iter_rows(named=True):
        full, _ = run_metrics(SmaCrossover, demo, START, END, params={"fast": row["fast"], "slow": row["slow"]})
        assert row["sharpe"] == full["sharpe"]


def test_pruning_needs_one_objective_and_a_valid_checkpoint(ray_session):
    with pytest.raises(SearchSpaceError, match="single objective"):
        sweep("median", objective=None) if False else ParallelOptimizer(space(), n_jobs=1, progress=False).run(
            SmaCrossover, "demo", START, END, objective=["sharpe", "max_drawdown"], pruner="median")
    with pytest.raises(Exception, match="checkpoint_every"):
        sweep("median", checkpoint_every="month")
    with pytest.raises(SearchSpaceError, match="unknown pruner"):
        sweep("sometimes")
