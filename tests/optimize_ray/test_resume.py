"""Resume from the results journal, objectives (several, callables) and repeated proposals, on real Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rustybt_ray import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import (
    DiscreteParameter,
    OptimizationConfig,
    ParallelOptimizer,
    ParameterSpace,
    RandomSearchAlgorithm,
)

HERE = Path(__file__).parent
START, END = "2018-01-01", "2019-12-31"


def space(slow_max: int = 60) -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 5, 15, 5), DiscreteParameter("slow", 30, slow_max, 15)])


def table(result) -> pl.DataFrame:
    return result.trials.select(["fast", "slow", "sharpe", "final_value", "status"]).sort(["fast", "slow"])


def test_rerun_with_the_journal_runs_nothing_and_an_edited_space_runs_only_new_points(ray_session, tmp_path):
    journal = tmp_path / "sweep.jsonl"
    opt = ParallelOptimizer(space(), n_jobs=2, progress=False)
    first = opt.run(SmaCrossover, "demo", START, END, journal=journal)
    assert first.trials["attempts"].min() >= 1 and opt.last_stats.trials == 9
    assert len(journal.read_text().splitlines()) == 9

    again = ParallelOptimizer(space(), n_jobs=2, progress=False)
    second = again.run(SmaCrossover, "demo", START, END, journal=journal)
    assert again.last_stats.trials == 0  # nothing was sent to a worker
    assert (second.trials["attempts"] == 0).all() and second.meta["reused_trials"] == 9
    assert table(second).equals(table(first))

    wider = ParallelOptimizer(space(slow_max=90), n_jobs=2, progress=False)
    third = wider.run(SmaCrossover, "demo", START, END, journal=journal)
    assert wider.last_stats.trials == 6 and len(third) == 15  # 3 fast x 2 new slow values
    new = third.trials.filter(pl.col("slow") > 60)
    assert (new["attempts"] >= 1).all() and (third.trials.filter(pl.col("slow") <= 60)["attempts"] == 0).all()
    demo = load_bundle("demo")
    for row in new.iter_rows(named=True):
        m, _ = run_metrics(SmaCrossover, demo, START, END, params={"fast": row["fast"], "slow": row["slow"]})
        assert row["sharpe"] == m["sharpe"]
    # Another date range is another trial: nothing is reused.
    other = ParallelOptimizer(space(), n_jobs=2, progress=False)
    other.run(SmaCrossover, "demo", "2018-01-01", "2019-06-30", journal=journal)
    assert other.last_stats.trials == 9


def test_a_torn_journal_resumed_three_times_loses_and_duplicates_nothing(ray_session, tmp_path):
    """A driver killed mid-write leaves a torn last line; the next record must not glue onto it."""
    import json

    journal = tmp_path / "torn.jsonl"
    ParallelOptimizer(space(), n_jobs=2, progress=False).run(SmaCrossover, "demo", START, END, journal=journal)
    text = journal.read_text()
    journal.write_text(text[: len(text) - 40])  # the last record lost its end and its newline
    runs = []
    for slow_max in (60, 60, 90):  # resume, resume again, resume a third time on an edited space
        opt = ParallelOptimizer(space(slow_max), n_jobs=2, progress=False)
        result = opt.run(SmaCrossover, "demo", START, END, journal=journal)
        runs.append((opt.last_stats.trials, len(result), result.meta["reused_trials"]))
    assert runs == [(1, 9, 8), (0, 9, 9), (6, 15, 9)]  # the torn trial reran once, nothing else did
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 15  # 0 lost, 0 duplicated, every line a record


def test_a_killed_driver_resumes_and_runs_only_what_was_missing(ray_session, resume_scenario, tmp_path):
    mod = resume_scenario
    journal = tmp_path / "killed.jsonl"
    mod.kill_driver_when(f"import resume_scenario; resume_scenario.main({str(journal)!r})",
                         lambda: journal.exists() and len(journal.read_text().splitlines()) >= 6)
    done_before = TrialJournalCount(journal)
    assert 6 <= done_before < 24, done_before  # killed mid-sweep

    opt = ParallelOptimizer(mod.space(), n_jobs=2, config=mod.config(), progress=False)
    result = opt.run(mod.SlowSma, "demo", mod.START, mod.END, objective="sharpe", journal=str(journal))
    assert len(result) == 24 and result.n_complete == 24
    assert opt.last_stats.trials == 24 - done_before  # only the missing trials ran
    assert int((result.trials["attempts"] == 0).sum()) == done_before
    demo = load_bundle("demo")
    for row in result.trials.iter_rows(named=True):  # and every number is the undisturbed one
        m, _ = run_metrics(SmaCrossover, demo, mod.START, mod.END, params={"fast": row["fast"], "slow": row["slow"]})
        assert row["sharpe"] == m["sharpe"] and row["final_value"] == m["final_value"]


def TrialJournalCount(path: Path) -> int:  # noqa: N802 - reads like the count it is
    from rustybt_ray.optimize.journal import TrialJournal

    return len(TrialJournal(path))


def test_several_objectives_give_a_pareto_front(ray_session):
    opt = ParallelOptimizer(space(90), n_jobs=2, progress=False)
    result = opt.run(SmaCrossover, "demo", START, END, objective=["sharpe", "max_drawdown"])
    assert result.objectives == [("sharpe", "maximize"), ("max_drawdown", "minimize")]
    front = result.pareto_front()
    rows = result.trials.select(["number", "sharpe", "max_drawdown"]).rows()
    expected = [
        n for n, s, d in rows
        if not any((s2 >= s and d2 <= d) and (s2 > s or d2 < d) for _, s2, d2 in rows)
    ]
    assert front["number"].to_list() == sorted(expected)
    assert len(expected) >= 1
    best = result.best
    assert best["number"] in expected  # the best Sharpe is never dominated


def test_callable_objective_becomes_a_column(ray_session):
    def sharpe_minus_drawdown(m: dict) -> float:
        return m["sharpe"] - 2 * m["max_drawdown"]

    result = ParallelOptimizer(space(), n_jobs=2, progress=False).run(
        SmaCrossover, "demo", START, END, objective=sharpe_minus_drawdown)
    t = result.trials
    np.testing.assert_allclose(t["sharpe_minus_drawdown"].to_numpy(), (t["sharpe"] - 2 * t["max_drawdown"]).to_numpy())
    assert result.best["metrics"]["sharpe_minus_drawdown"] == t["sharpe_minus_drawdown"].max()
    lam = ParallelOptimizer(space(), n_jobs=2, progress=False).run(
        SmaCrossover, "demo", START, END, objective=lambda m: -m["annual_volatility"], direction="maximize")
    assert lam.objective == "objective"
    assert lam.best["metrics"]["annual_volatility"] == lam.trials["annual_volatility"].min()
    # An objective that raises fails the trials it raised on, with its traceback; the sweep finishes.
    bad = ParallelOptimizer(space(), n_jobs=2, progress=False).run(
        SmaCrossover, "demo", START, END, objective=lambda m: m["no_such_metric"])
    assert bad.n_failed == len(bad) == 9
    assert "no_such_metric" in bad.trials["error"][0] and "objective function raised" in bad.trials["error"][0]


def test_repeated_proposals_run_once(ray_session):
    two_points = ParameterSpace([DiscreteParameter("fast", 5, 10, 5), DiscreteParameter("slow", 40, 40, 1)])
    opt = ParallelOptimizer(RandomSearchAlgorithm(two_points, n_trials=12, seed=3), n_jobs=2, progress=False,
                            config=OptimizationConfig(min_batch_seconds=0.001, max_batch_size=4))
    result = opt.run(SmaCrossover, "demo", START, END)
    assert len(result) == 12 and result.n_complete == 12
    assert opt.last_stats.trials == 2  # one run per distinct point
    by_fast = result.trials.group_by("fast").agg(pl.col("sharpe").n_unique().alias("k"), pl.len().alias("n"))
    assert by_fast["k"].to_list() == [1, 1] and by_fast["n"].sum() == 12
