"""Sweeps with ``fractional_shares=True`` on a real local Ray: the numbers, the journal keys, the refusals.

Capital 1,000 over the demo bundle's 8 assets is 125 a position: SPY (about 250 in
2018-2019) buys 0 whole shares but half a share, so whole and fractional sweeps differ.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rustybt_ray import Bundle, load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.errors import StrategyError
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverVector
from rustybt_ray.optimization import (
    DiscreteParameter,
    GridSearchAlgorithm,
    ParallelOptimizer,
    ParameterSpace,
    WalkForwardOptimizer,
    WindowConfig,
    WorkerPool,
)
from rustybt_ray.optimize.journal import trial_key
from rustybt_ray.optimize.session import SweepSession

START, END = "2018-01-01", "2019-12-31"
CAPITAL = 1_000.0


def space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 5, 10, 5), DiscreteParameter("slow", 30, 60, 30)])


@pytest.fixture(scope="module")
def demo() -> Bundle:
    return load_bundle("demo")


@pytest.fixture(scope="module")
def pool(ray_session):
    with WorkerPool(2) as p:
        yield p


def reference(demo: Bundle, fractional: bool) -> dict[tuple[int, int], dict[str, float]]:
    """Every grid point's metrics computed in-process, one run_metrics call each, without Ray."""
    out = {}
    for params in space().grid():
        m, _ = run_metrics(SmaCrossover, demo, START, END, CAPITAL, params, fractional_shares=fractional)
        out[(params["fast"], params["slow"])] = m
    return out


def sweep(pool, demo, **kwargs):
    opt = ParallelOptimizer(GridSearchAlgorithm(space()), pool=pool, progress=False)
    return opt.run(SmaCrossover, demo, START, END, capital_base=CAPITAL, **kwargs)


def by_point(result) -> dict[tuple[int, int], dict]:
    return {(r["fast"], r["slow"]): r for r in result.trials.iter_rows(named=True)}


def test_fractional_sweep_equals_run_metrics_trial_by_trial(pool, demo):
    want = reference(demo, fractional=True)
    got = by_point(sweep(pool, demo, fractional_shares=True))
    assert got.keys() == want.keys() and len(got) == 4
    for point, row in got.items():
        assert row["status"] == "complete"
        for name in ("final_value", "sharpe", "n_transactions", "total_return"):
            assert row[name] == want[point][name], (point, name)  # bit-identical: the same function
    whole = by_point(sweep(pool, demo))
    whole_want = reference(demo, fractional=False)
    assert all(whole[p]["final_value"] == whole_want[p]["final_value"] for p in whole)
    differ = [p for p in got if got[p]["final_value"] != whole[p]["final_value"]]
    assert differ, "capital 1,000 on 8 assets must make fractional and whole shares differ"
    # Fractional shares keep more of the capital invested: more fills than whole shares somewhere.
    assert any(got[p]["n_transactions"] > whole[p]["n_transactions"] for p in got)


def test_identity_has_the_flag_only_when_true(demo):
    whole = SweepSession(SmaCrossover, demo, START, END, capital_base=CAPITAL).identity()
    frac = SweepSession(SmaCrossover, demo, START, END, capital_base=CAPITAL, fractional_shares=True).identity()
    assert "fractional_shares" not in whole  # the keys of journals written before the option are unchanged
    assert frac == {**whole, "fractional_shares": True}
    assert trial_key(whole, {"fast": 5}) != trial_key(frac, {"fast": 5})


def test_a_whole_share_journal_is_not_reused_for_a_fractional_sweep(pool, demo, tmp_path):
    journal = tmp_path / "sweep.jsonl"
    first = sweep(pool, demo, journal=journal)
    assert first.meta["reused_trials"] == 0 and len(journal.read_text().splitlines()) == 4
    again = sweep(pool, demo, journal=journal)
    assert again.meta["reused_trials"] == 4 and (again.trials["attempts"] == 0).all()  # whole shares: reused
    frac = sweep(pool, demo, journal=journal, fractional_shares=True)
    assert frac.meta["reused_trials"] == 0 and (frac.trials["attempts"] >= 1).all()  # ran again
    want = reference(demo, fractional=True)
    assert all(r["final_value"] == want[p]["final_value"] for p, r in by_point(frac).items())
    assert len(journal.read_text().splitlines()) == 8
    frac_again = sweep(pool, demo, journal=journal, fractional_shares=True)
    assert frac_again.meta["reused_trials"] == 4
    assert by_point(frac_again).keys() == by_point(frac).keys()
    assert all(by_point(frac_again)[p]["final_value"] == r["final_value"] for p, r in by_point(frac).items())
    whole_third = sweep(pool, demo, journal=journal)
    assert whole_third.meta["reused_trials"] == 4
    assert all(by_point(whole_third)[p]["final_value"] == r["final_value"] for p, r in by_point(first).items())
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(set(keys)) == 8


def test_walk_forward_test_runs_are_fractional(pool, demo):
    config = WindowConfig(train_period_days=120, validation_period_days=0, test_period_days=60, unit="days")
    wf = WalkForwardOptimizer(space(), config, pool=pool, progress=False, top_k=1)
    res = wf.run(SmaCrossover, demo, START, "2019-06-30", capital_base=CAPITAL, fractional_shares=True)
    assert res.meta["fractional_shares"] is True and res.windows.height >= 2
    for w, row in zip(res.window_specs, res.windows.iter_rows(named=True)):
        params = {"fast": row["fast"], "slow": row["slow"]}
        m, r = run_metrics(SmaCrossover, demo, w.test.first, w.test.last, CAPITAL, params, with_returns=True,
                           fractional_shares=True)
        assert row["test_final_value"] == pytest.approx(m["final_value"], rel=1e-12)
        got = res.oos_returns.filter(res.oos_returns["window"] == w.index)["returns"].to_numpy()
        np.testing.assert_array_equal(got, r.astype(np.float32))


# -- refused before Ray starts (no pool, no ray_session) ---------------------------------------


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_fractional_shares_must_be_a_bool(demo, bad, tmp_path):
    journal = tmp_path / "never.jsonl"
    opt = ParallelOptimizer(space(), n_jobs=1, progress=False)
    with pytest.raises(StrategyError, match="fractional_shares must be True or False"):
        opt.run(SmaCrossover, demo, START, END, fractional_shares=bad, journal=journal)
    assert not journal.exists()
    wf = WalkForwardOptimizer(space(), WindowConfig(120, 0, 60, unit="days"), n_jobs=1, progress=False)
    with pytest.raises(StrategyError, match="fractional_shares must be True or False"):
        wf.validate(SmaCrossover, demo, START, END, fractional_shares=bad)


def test_a_vector_strategy_is_refused_with_fractional_shares(demo, tmp_path):
    journal = tmp_path / "never.jsonl"
    opt = ParallelOptimizer(space(), n_jobs=1, progress=False)
    with pytest.raises(StrategyError, match="VectorStrategy.*whole shares only.*event-engine strategy"):
        opt.validate(SmaCrossoverVector, demo, START, END, fractional_shares=True)
    with pytest.raises(StrategyError, match="SmaCrossoverVector"):
        opt.run(SmaCrossoverVector, demo, START, END, fractional_shares=True, journal=journal)
    assert not journal.exists()
    wf = WalkForwardOptimizer(space(), WindowConfig(120, 0, 60, unit="days"), n_jobs=1, progress=False)
    with pytest.raises(StrategyError, match="VectorStrategy"):
        wf.validate(SmaCrossoverVector, demo, START, END, fractional_shares=True)
    opt.validate(SmaCrossoverVector, demo, START, END)  # whole shares: still fine
