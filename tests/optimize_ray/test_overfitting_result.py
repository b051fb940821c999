"""Every sweep result carries its overfitting statistics, computed from the trials' own returns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rustybt_ray import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.errors import OverfittingError
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import DiscreteParameter, OptimizationConfig, ParallelOptimizer, ParameterSpace
from rustybt_ray.optimize.overfitting import deflated_sharpe_ratio, probability_of_backtest_overfitting

START, END = "2012-01-01", "2019-12-31"


def space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 5, 25, 5), DiscreteParameter("slow", 40, 120, 20)],
                          constraints=["fast < slow"])


def test_overfitting_matches_an_independent_computation(ray_session):
    result = ParallelOptimizer(space(), n_jobs=2, progress=False).run(SmaCrossover, "demo", START, END)
    report = result.overfitting(n_splits=8)
    demo = load_bundle("demo")
    cols, numbers = [], []
    for row in result.trials.iter_rows(named=True):
        _, r = run_metrics(SmaCrossover, demo, START, END, params={"fast": row["fast"], "slow": row["slow"]},
                           with_returns=True)
        cols.append(np.nan_to_num(r.astype(np.float32).astype(np.float64)))
        numbers.append(row["number"])
    matrix = np.column_stack(cols)
    best = numbers.index(result.best["number"])
    sharpes = matrix.mean(axis=0) / matrix.std(axis=0, ddof=1)
    dsr = deflated_sharpe_ratio(matrix[:, best], len(numbers), float(np.var(sharpes, ddof=1)))
    pbo = probability_of_backtest_overfitting(matrix, n_splits=8)
    assert report["best_number"] == result.best["number"]
    assert report["n_trials"] == len(result) == 25  # every grid point satisfies fast < slow
    assert report["dsr"] == pytest.approx(dsr.dsr, rel=1e-12)
    assert report["pbo"] == pytest.approx(pbo.pbo, abs=0)
    assert 0.0 <= report["pbo"] <= 1.0 and 0.0 <= report["dsr"] <= 1.0
    assert report["sharpe_annual"] == pytest.approx(report["sharpe"] * math.sqrt(demo.periods_per_year))
    # The selected trial's annualised Sharpe is the table's best (same returns, ddof=1).
    assert report["sharpe_annual"] == pytest.approx(result.best["metrics"]["sharpe"], rel=1e-4)


def test_without_returns_the_error_says_what_to_change(ray_session):
    result = ParallelOptimizer(space(), n_jobs=2, progress=False,
                               config=OptimizationConfig(return_daily_returns=False)).run(
        SmaCrossover, "demo", START, END)
    with pytest.raises(OverfittingError, match="return_daily_returns=True"):
        result.overfitting()


def test_pruned_trials_count_as_tried_in_the_deflation(ray_session):
    import optuna

    from rustybt_ray.optimize.overfitting import deflated_sharpe_ratio

    class EveryOther(optuna.pruners.BasePruner):
        """Prunes odd-numbered trials: a known number of pruned candidates."""

        def prune(self, study, trial) -> bool:
            return trial.number % 2 == 1

    result = ParallelOptimizer(space(), n_jobs=1, progress=False).run(
        SmaCrossover, "demo", START, END, pruner=EveryOther(), checkpoint_every="year")
    assert result.n_pruned > 0
    report = result.overfitting(n_splits=8)
    assert report["n_trials"] == result.n_complete + result.n_pruned == len(result)
    assert report["n_with_returns"] == result.n_complete
    best = result.best["number"]
    r = np.nan_to_num(result.returns[best].astype(np.float64))
    expected = deflated_sharpe_ratio(r, len(result), report["sharpe_variance"])
    assert report["dsr"] == pytest.approx(expected.dsr, rel=1e-12)


class _ScaledSma(SmaCrossover):
    """SMA crossover at ``scale`` of its weights: ``scale=0`` never trades (constant, zero returns)."""

    scale = 1.0

    def order_target_percent(self, asset, target, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        return super().order_target_percent(asset, target * self.scale, *args, **kwargs)


def test_trials_that_never_trade_leave_the_matrix_but_still_deflate(ray_session):
    sp = ParameterSpace([DiscreteParameter("fast", 5, 15, 5), DiscreteParameter("slow", 40, 80, 40),
                         DiscreteParameter("scale", 0, 1, 1)])
    result = ParallelOptimizer(sp, n_jobs=2, progress=False).run(_ScaledSma, "demo", START, END)
    report = result.overfitting(n_splits=4)
    rows = sorted(result.trials.iter_rows(named=True), key=lambda r: r["number"])
    live = [r["number"] for r in rows if r["scale"] == 1]
    assert report["n_constant_returns"] == len(rows) - len(live) == 6
    assert report["n_with_returns"] == len(live) and report["n_trials"] == len(rows) == 12
    matrix = np.column_stack([np.nan_to_num(np.asarray(result.returns[n], dtype=np.float64)) for n in live])
    sharpes = matrix.mean(axis=0) / matrix.std(axis=0, ddof=1)
    best = live.index(result.best["number"])
    want = deflated_sharpe_ratio(matrix[:, best], len(rows), float(np.var(sharpes, ddof=1)))
    assert report["dsr"] == pytest.approx(want.dsr, rel=1e-9)
    assert report["pbo"] == probability_of_backtest_overfitting(matrix, n_splits=4).pbo
