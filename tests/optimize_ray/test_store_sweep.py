"""Sweeps kept out of core (``run(..., store=DIR)``) on real Ray: equal to memory, resumable, SIGKILL-safe."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from rustybt_ray import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.errors import RustyBTError, StrategyError
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import (
    DiscreteParameter,
    OptimizationConfig,
    OptimizationResult,
    ParallelOptimizer,
    ParameterSpace,
    RandomSearchAlgorithm,
)

HERE = Path(__file__).parent
START, END = "2018-01-01", "2019-12-31"
# Columns that describe the run, not the trial: they differ between two runs of one sweep.
RUN_COLUMNS = ["duration_s", "worker", "attempts"]


def space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 3, 20), DiscreteParameter("slow", 25, 90, 5)], ["fast < slow"])


def sweep(n_jobs: int = 2, config: OptimizationConfig | None = None) -> ParallelOptimizer:
    return ParallelOptimizer(RandomSearchAlgorithm(space(), n_trials=14, seed=11), n_jobs=n_jobs,
                             config=config, progress=False)


def committed_rows(store: Path) -> int:
    """Rows a reader of the store sees (committed shards only)."""
    return sum(pq.read_metadata(f).num_rows for f in (store / "trials").glob("part-*.parquet"))


def test_a_stored_sweep_equals_the_same_sweep_in_memory_and_a_rerun_runs_nothing(ray_session, tmp_path):
    in_memory = sweep()
    memory = in_memory.run(SmaCrossover, "demo", START, END)
    store = tmp_path / "sweep"
    opt = sweep(config=OptimizationConfig(store_commit_s=0.05))
    stored = opt.run(SmaCrossover, "demo", START, END, store=store)
    # 14 trials; a point drawn twice runs once, in both (answered from the first).
    assert stored.lazy and not memory.lazy and len(stored) == 14
    assert opt.last_stats.trials == in_memory.last_stats.trials >= 10
    # Same trials, same numbers, same order: the table, the ranking and every trial's returns.
    assert stored.trials.drop(RUN_COLUMNS).equals(memory.trials.drop(RUN_COLUMNS))
    assert stored.top(5).drop(RUN_COLUMNS).equals(memory.top(5).drop(RUN_COLUMNS))
    assert stored.best["number"] == memory.best["number"] and stored.best_params == memory.best_params
    assert sorted(stored.returns) == sorted(memory.returns) and len(memory.returns) > 0
    for n in memory.returns:
        assert np.array_equal(np.asarray(stored.returns[n]), np.asarray(memory.returns[n]), equal_nan=True)
    assert stored.overfitting()["dsr"] == pytest.approx(memory.overfitting()["dsr"], rel=1e-9)
    # What the store says is what an independent backtest of each trial gives.
    demo = load_bundle("demo")
    for row in stored.filter(pl.col("status") == "complete").head(4).iter_rows(named=True):
        m, _ = run_metrics(SmaCrossover, demo, START, END, params={"fast": row["fast"], "slow": row["slow"]})
        assert row["sharpe"] == m["sharpe"] and row["final_value"] == m["final_value"]

    # The store is the journal: the same sweep again sends nothing to a worker, and reads back equal.
    again = sweep()
    second = again.run(SmaCrossover, "demo", START, END, store=store)
    # A reused trial keeps its row as it ran (a store holds one row a trial; nothing is rewritten).
    assert again.last_stats.trials == 0 and second.trials.equals(stored.trials)
    reopened = OptimizationResult.open(store)
    assert len(reopened) == 14 and reopened.best["number"] == memory.best["number"]


def test_a_large_sweep_without_a_store_spills_to_results_dir_and_says_where(ray_session, tmp_path):
    config = OptimizationConfig(spill_trials=10, results_dir=str(tmp_path / "spilled"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sweep(config=config).run(SmaCrossover, "demo", START, END)
    spilled = [w for w in caught if "out of core" in str(w.message)]
    assert len(spilled) == 1 and result.lazy
    (where,) = list((tmp_path / "spilled").iterdir())
    assert str(where) in str(spilled[0].message) and committed_rows(where) == 14
    assert OptimizationResult.open(where).best["number"] == result.best["number"]
    # Below the threshold nothing spills: the result stays in memory and nothing is written.
    small = sweep(config=OptimizationConfig(spill_trials=15, results_dir=str(tmp_path / "none"))).run(
        SmaCrossover, "demo", START, END)
    assert not small.lazy and not (tmp_path / "none").exists()


def test_store_and_journal_together_or_a_store_of_another_sweep_fail_before_anything_runs(ray_session, tmp_path):
    with pytest.raises(StrategyError, match="journal= or store="):
        sweep().run(SmaCrossover, "demo", START, END, store=tmp_path / "s", journal=tmp_path / "j.jsonl")
    assert not (tmp_path / "s").exists() and not (tmp_path / "j.jsonl").exists()
    store = tmp_path / "one"
    sweep().run(SmaCrossover, "demo", START, END, store=store)
    before = sorted(p.name for p in (store / "trials").iterdir())
    other = sweep()  # the same search over other dates: another job, whose trials this store does not hold
    with pytest.raises(RustyBTError) as info:
        other.run(SmaCrossover, "demo", START, "2019-06-30", store=store)
    assert str(store) in str(info.value)
    assert other.last_stats is None or other.last_stats.trials == 0
    assert sorted(p.name for p in (store / "trials").iterdir()) == before  # nothing written


def test_a_sigkilled_store_driver_resumes_losing_and_duplicating_nothing(ray_session, resume_scenario, tmp_path):
    mod = resume_scenario
    store = tmp_path / "killed"
    mod.kill_driver_when(f"import resume_scenario; resume_scenario.main({str(store)!r}, store=True)",
                         lambda: (store / "trials").is_dir() and committed_rows(store) >= 6)
    done_before = committed_rows(store)
    assert 6 <= done_before < 24, done_before  # killed mid-sweep
    with pytest.raises(RustyBTError, match="resume"):
        OptimizationResult.open(store)  # a dead sweep's store says how to go on

    opt = ParallelOptimizer(mod.space(), n_jobs=2, config=mod.store_config(), progress=False)
    result = opt.run(mod.SlowSma, "demo", mod.START, mod.END, objective="sharpe", store=str(store))
    assert len(result) == 24 and result.n_complete == 24
    assert opt.last_stats.trials == 24 - done_before  # only the missing trials ran
    numbers = pl.scan_parquet(sorted((store / "trials").glob("part-*.parquet"))).select("number").collect()["number"]
    assert numbers.len() == numbers.n_unique() == 24  # on disk too: 0 lost, 0 duplicated
    demo = load_bundle("demo")
    for row in result.trials.iter_rows(named=True):  # and every number is the undisturbed one
        m, _ = run_metrics(SmaCrossover, demo, mod.START, mod.END, params={"fast": row["fast"], "slow": row["slow"]})
        assert row["sharpe"] == m["sharpe"] and row["final_value"] == m["final_value"]
        assert np.isfinite(np.asarray(result.returns[row["number"]])).sum() > 0
