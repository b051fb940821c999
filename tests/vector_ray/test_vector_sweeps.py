"""VectorStrategy sweeps batched on real Ray workers: grid, random, Optuna TPE, walk-forward.

Every trial's numbers equal ``run_metrics`` of the same parameters on the event path
(the VectorStrategy through the event loop), whatever the batch size or the number
of workers; per-bar returns come back for the overfitting statistics.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rustybt_ray.cluster.pool import WorkerPool
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.engine.run import run_metrics
from rustybt_ray.examples.mean_reversion import MeanReversionVector
from rustybt_ray.examples.momentum import MomentumVector
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
from rustybt_ray.optimize import GridSearchAlgorithm, ParallelOptimizer, RandomSearchAlgorithm
from rustybt_ray.optimize.optuna_search import OptunaSearch
from rustybt_ray.optimize.space import ContinuousParameter, DiscreteParameter, ParameterSpace
from rustybt_ray.optimize.walk_forward import WalkForwardOptimizer
from rustybt_ray.optimize.windows import WindowConfig
from rustybt_ray.vector.budget import trials_per_call
from rustybt_ray.vector.run import run_vector_batch
from vector_ray_kit import END, START, assert_metrics_close, check_against_event_path, sma_space

METRICS = ["sharpe", "final_value", "total_return", "max_drawdown", "n_transactions", "turnover", "win_rate"]


def kernel_sizes(pool: WorkerPool) -> dict[int, list[int]]:
    import ray

    return {wid: ray.get(a.kernel_stats.remote())["sizes"] for wid, a in pool.workers.items()}


def new_calls(before: dict[int, list[int]], after: dict[int, list[int]]) -> list[int]:
    return [k for wid in after for k in after[wid][len(before.get(wid, [])):]]


@pytest.fixture(scope="module")
def grid(pool, demo):
    """The 16-point grid through ParallelOptimizer, with the kernel calls it made."""
    before = kernel_sizes(pool)
    opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False)
    res = opt.run(SmaCrossoverVector, demo, START, END)
    return res, opt.last_stats, new_calls(before, kernel_sizes(pool))


def test_grid_equals_the_event_path_with_returns(grid, demo):
    res, stats, calls = grid
    assert res.n_complete == 16
    assert check_against_event_path(res, SmaCrossoverVector, demo) == 16
    ov = res.overfitting(n_splits=4)
    assert ov["n_with_returns"] == 16 and 0.0 <= ov["pbo"] <= 1.0


def test_grid_goes_as_one_big_batch_per_worker(grid, demo):
    res, stats, calls = grid
    expected_k = min(256, trials_per_call(demo.calendar.shape[0], len(demo.assets), 64 << 20))
    assert stats.kernel_trials == expected_k
    assert stats.batch_sizes == [8, 8]  # ceil(16 / 2 workers) from the first batch, not 1, 1, 2, ...
    assert sorted(calls) == [8, 8]  # and each batch is one kernel call
    assert res.trials["worker"].n_unique() == 2
    # duration_s is the call's wall shared out: equal within a batch
    for _, grp in res.trials.group_by("worker"):
        assert grp["duration_s"].n_unique() == 1


def test_k_follows_the_budget_and_results_do_not_depend_on_it(grid, pool, demo):
    res, _, _ = grid
    cfg = OptimizationConfig(kernel_memory_mb=0.001)  # ~1 KiB: one trial per kernel call
    before = kernel_sizes(pool)
    opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, config=cfg, progress=False)
    small = opt.run(SmaCrossoverVector, demo, START, END)
    calls = new_calls(before, kernel_sizes(pool))
    assert opt.last_stats.kernel_trials == 1 and opt.last_stats.batch_sizes == [1] * 16
    assert calls == [1] * 16
    cols = ["number", "fast", "slow", *METRICS]
    assert small.trials.select(cols).equals(res.trials.select(cols))
    # max_batch_size caps vector batches too: 3 per batch, kernel calls of 3 or fewer
    before = kernel_sizes(pool)
    opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool,
                            config=OptimizationConfig(max_batch_size=3), progress=False)
    capped = opt.run(SmaCrossoverVector, demo, START, END)
    assert max(opt.last_stats.batch_sizes) == 3 and sum(opt.last_stats.batch_sizes) == 16
    assert max(new_calls(before, kernel_sizes(pool))) == 3
    assert capped.trials.select(cols).equals(res.trials.select(cols))
    # In one process, all 16 in one call: the same numbers again.
    params = [{"fast": r["fast"], "slow": r["slow"]} for r in res.trials.iter_rows(named=True)]
    local = run_vector_batch(SmaCrossoverVector, demo, START, END, 100_000.0, params, batch_size=16)
    for row, (m, _) in zip(res.trials.iter_rows(named=True), local):
        assert {k: row[k] for k in METRICS} == {k: m[k] for k in METRICS}


def test_results_do_not_depend_on_the_worker_count(grid, ray_session, demo):
    res, _, _ = grid
    with WorkerPool(1) as one:
        opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=one, progress=False)
        single = opt.run(SmaCrossoverVector, demo, START, END)
    assert opt.last_stats.batch_sizes == [16]
    cols = ["number", "fast", "slow", *METRICS]
    assert single.trials.select(cols).equals(res.trials.select(cols))
    assert single.trials["worker"].n_unique() == 1


def test_a_warm_pool_loads_the_kernel_as_it_starts_and_gives_the_same_results(grid, ray_session, demo):
    import time

    import ray

    res, _, _ = grid
    with WorkerPool(2, warm_kernel=True) as warm:
        deadline = time.monotonic() + 120
        while True:
            infos = ray.get([a.info.remote() for a in warm.workers.values()])
            if all(i["kernel_warm_s"] is not None for i in infos) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert all(np.isfinite(i["kernel_warm_s"]) and i["kernel_calls"] == 0 for i in infos), infos
        opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=warm, progress=False)
        again = opt.run(SmaCrossoverVector, demo, START, END)
    cols = ["number", "fast", "slow", *METRICS]
    assert again.trials.select(cols).equals(res.trials.select(cols))


def test_random_search_mean_reversion(pool, demo):
    space = ParameterSpace([DiscreteParameter("window", 10, 40, 5), ContinuousParameter("entry", 1.0, 2.5),
                            ContinuousParameter("exit_band", 0.1, 0.5)])
    opt = ParallelOptimizer(RandomSearchAlgorithm(space, n_trials=10, seed=4), pool=pool, progress=False)
    res = opt.run(MeanReversionVector, demo, START, END)
    assert res.n_complete == 10 and opt.last_stats.batch_sizes == [5, 5]
    assert check_against_event_path(res, MeanReversionVector, demo, names=("window", "entry", "exit_band")) == 10
    assert res.overfitting(n_splits=4)["n_with_returns"] == 10


def test_optuna_tpe_momentum(pool, demo):
    space = ParameterSpace([DiscreteParameter("lookback", 20, 120, 10), DiscreteParameter("top_k", 1, 4, 1)])
    algo = OptunaSearch(space, sampler="tpe", n_trials=24, seed=1)
    opt = ParallelOptimizer(algo, pool=pool, progress=False)
    res = opt.run(MomentumVector, demo, START, END)
    assert len(res) == 24 and res.n_complete == 24
    assert check_against_event_path(res, MomentumVector, demo, names=("lookback", "top_k")) == 24
    # TPE learns from results: batches follow its look-ahead (8 per worker), not the whole study at once.
    assert max(opt.last_stats.batch_sizes) <= OptunaSearch.prefetch_trials
    assert sum(opt.last_stats.batch_sizes) == 24
    # The study holds every trial's objective, best included.
    values = [t.value for t in algo.study.trials if t.value is not None]
    assert len(values) == 24 and max(values) == pytest.approx(res.best["metrics"]["sharpe"], rel=1e-12)
    assert res.overfitting(n_splits=4)["n_with_returns"] == 24


def test_walk_forward(pool, demo):
    space = ParameterSpace([DiscreteParameter("fast", 5, 20, 5), DiscreteParameter("slow", 30, 60, 15)],
                           constraints=["fast < slow"])
    cfg = WindowConfig(train_period_days=120, validation_period_days=60, test_period_days=60, unit="days")
    wf = WalkForwardOptimizer(space, cfg, pool=pool, progress=False, top_k=2)
    res = wf.run(SmaCrossoverVector, demo, "2018-01-01", "2019-12-31")
    assert res.windows.height >= 4 and (res.windows["status"] == "ok").all()
    # Trials of different windows (different dates) shared batches: fewer batches than windows x phases.
    assert res.stats.batches < 3 * res.windows.height
    for k, w in enumerate(res.window_specs):
        tr = res.train_results[k]
        check_against_event_path(tr, SmaCrossoverVector, demo, w.train.first, w.train.last)
        for c in res.validation.filter(pl.col("window") == k).iter_rows(named=True):
            m, _ = run_metrics(SmaCrossoverVector, demo, w.validation.first, w.validation.last,
                               params={"fast": c["fast"], "slow": c["slow"]})
            assert_metrics_close({"sharpe": c["validation_sharpe"]}, {"sharpe": m["sharpe"]})
        row = res.windows.row(k, named=True)
        m, r = run_metrics(SmaCrossoverVector, demo, w.test.first, w.test.last,
                           params={"fast": row["fast"], "slow": row["slow"]}, with_returns=True)
        assert_metrics_close({"final_value": row["test_final_value"]}, {"final_value": m["final_value"]})
        oos = res.oos_returns.filter(pl.col("window") == k)["returns"].to_numpy()
        np.testing.assert_allclose(oos, r.astype(np.float32), rtol=1e-6, atol=1e-9)
