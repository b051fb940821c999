"""WalkForwardOptimizer on a real local Ray: selection on validation, no look-ahead, stitched OOS returns,
all windows running at once, journal reuse."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from rustybt_ray import Bundle, load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.metrics import compute_metrics
from rustybt_ray.optimization import (
    DiscreteParameter,
    ParameterSpace,
    RandomSearchAlgorithm,
    WalkForwardOptimizer,
    WindowConfig,
    WorkerPool,
)
from rustybt_ray.optimize.journal import strategy_fingerprint, trial_key

START, END = "2018-01-01", "2020-06-30"
CONFIG = WindowConfig(train_period_days=120, validation_period_days=60, test_period_days=60, unit="days")
PARAMS = ["fast", "slow"]


def space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 5, 20, 5), DiscreteParameter("slow", 30, 60, 15)],
                          constraints=["fast < slow"])


@pytest.fixture(scope="module")
def demo() -> Bundle:
    return load_bundle("demo")


@pytest.fixture(scope="module")
def pool(ray_session):
    with WorkerPool(2) as p:
        yield p


def wf(pool, config: WindowConfig = CONFIG, **kwargs) -> WalkForwardOptimizer:
    kwargs.setdefault("top_k", 3)
    return WalkForwardOptimizer(space(), config, pool=pool, progress=False, **kwargs)


@pytest.fixture(scope="module")
def result(pool, demo):
    return wf(pool).run(SmaCrossover, demo, START, END)


def selections(res) -> list[dict]:
    return res.windows.select(["window", *PARAMS, "train_sharpe", "validation_sharpe"]).to_dicts()


def test_selection_is_the_validation_argmax_among_the_train_top_k(result, demo):
    assert result.windows.height == 12 and (result.windows["status"] == "ok").all()
    assert (result.windows["selected_by"] == "validation").all()
    moved = 0
    for k, res in enumerate(result.train_results):
        assert len(res) == 12  # the whole grid ran on every window's train segment
        cand = result.validation.filter(pl.col("window") == k).sort("candidate")
        # The candidates are the train top 3, in train order.
        top = res.top(3)
        assert cand.select(PARAMS).equals(top.select(PARAMS))
        assert np.allclose(cand["train_sharpe"].to_numpy(), top["sharpe"].to_numpy())
        # The selection is the validation argmax (not the train argmax).
        val = cand["validation_sharpe"].to_numpy()
        best = int(np.nanargmax(val))
        assert cand["selected"].to_list() == [i == best for i in range(cand.height)]
        row = result.windows.row(k, named=True)
        assert row["train_rank"] == best
        assert {p: row[p] for p in PARAMS} == {p: cand[p][best] for p in PARAMS}
        assert row["validation_sharpe"] == pytest.approx(val[best])
        assert row["train_sharpe"] == pytest.approx(cand["train_sharpe"][best])
        moved += best != 0
    # On this data the validation overrules the train ranking in several windows.
    assert moved >= 3
    # Each window's train search is a whole OptimizationResult, per-bar returns included (the default config).
    tr = result.train_results[0]
    assert tr.meta["start"] == str(result.window_specs[0].train.first) and len(tr.returns) == 12
    assert 0.0 <= tr.overfitting(n_splits=4)["pbo"] <= 1.0
    # The validation numbers are those of in-process runs on the validation dates.
    w = result.window_specs[1]
    for c in result.validation.filter(pl.col("window") == 1).iter_rows(named=True):
        m, _ = run_metrics(SmaCrossover, demo, w.validation.first, w.validation.last,
                           params={"fast": c["fast"], "slow": c["slow"]})
        assert c["validation_sharpe"] == pytest.approx(m["sharpe"], rel=1e-12)


def test_without_validation_the_train_best_is_selected(pool, demo):
    res = wf(pool, WindowConfig(120, 0, 60, unit="days")).run(SmaCrossover, demo, START, END)
    assert (res.windows["selected_by"] == "train").all() and (res.windows["train_rank"] == 0).all()
    assert res.windows["validation_start"].is_null().all()
    for k, tr in enumerate(res.train_results):
        row = res.windows.row(k, named=True)
        assert {p: row[p] for p in PARAMS} == tr.best_params
        assert row["train_sharpe"] == pytest.approx(tr.best["metrics"]["sharpe"])


def perturbed(demo: Bundle, after: np.datetime64) -> Bundle:
    """The demo bundle with every price after ``after`` moved by a random walk (bars before it untouched)."""
    frame = demo.to_long_frame()
    rng = np.random.default_rng(7)
    late = frame["date"].to_numpy() > after
    factor = np.ones(frame.height)
    for sym in frame["symbol"].unique().to_list():
        idx = np.flatnonzero(late & (frame["symbol"] == sym).to_numpy())
        factor[idx] = np.exp(np.cumsum(rng.normal(0.0, 0.03, idx.size)))
    f = pl.Series(factor)
    frame = frame.with_columns([pl.col(c) * f for c in ("open", "high", "low", "close")])
    return Bundle.from_long_frame(frame, "perturbed", demo.frequency)


def test_no_look_ahead(pool, demo, result):
    k = 4
    cut = result.window_specs[k].validation.last
    other = perturbed(demo, cut)
    i = int(np.searchsorted(demo.calendar, cut, side="right"))
    assert np.array_equal(other.values[:, :i], demo.values[:, :i], equal_nan=True)
    assert not np.allclose(other.close[i:], demo.close[i:], equal_nan=True)
    res = wf(pool).run(SmaCrossover, other, START, END)
    before, after = selections(result), selections(res)
    # Windows 0..k: chosen from bars up to window k's validation end only, so nothing changed.
    assert after[: k + 1] == before[: k + 1]
    assert result.validation.filter(pl.col("window") <= k).equals(res.validation.filter(pl.col("window") <= k))
    for j in range(k + 1):
        cols = ["number", *PARAMS, "sharpe", "final_value", "n_transactions"]
        assert result.train_results[j].trials.select(cols).equals(res.train_results[j].trials.select(cols))
    # Window k's test segment comes after the cut: its out-of-sample run did change.
    assert result.windows["test_final_value"][k] != res.windows["test_final_value"][k]
    # Every later window validated (and tested) on moved prices, and some chose differently.
    for j in range(k + 1, result.windows.height):
        assert before[j]["validation_sharpe"] != after[j]["validation_sharpe"]
    assert any({p: before[j][p] for p in PARAMS} != {p: after[j][p] for p in PARAMS}
               for j in range(k + 1, result.windows.height))


def test_oos_returns_stitch_the_test_segments_in_order(result, demo):
    specs = result.window_specs
    for w, row in zip(specs, result.windows.iter_rows(named=True)):
        # Test bars come after every bar the window trained or validated on.
        assert w.train.stop <= w.validation.start and w.validation.stop <= w.test.start
        assert row["train_end"] < row["validation_start"] <= row["validation_end"] < row["test_start"]
        assert row["test_start"] == w.test.first.astype("datetime64[us]").item()
    for a, b in zip(specs, specs[1:]):
        assert a.test.stop <= b.test.start  # test segments never overlap
    oos = result.oos_returns
    expect = np.concatenate([demo.calendar[w.test.start:w.test.stop] for w in specs])
    assert np.array_equal(oos["date"].to_numpy(), expect)
    assert (np.diff(oos["date"].to_numpy()) > np.timedelta64(0)).all()
    assert oos["window"].to_list() == [w.index for w in specs for _ in range(len(w.test))]
    for w, row in zip(specs, result.windows.iter_rows(named=True)):
        m, r = run_metrics(SmaCrossover, demo, w.test.first, w.test.last,
                           params={p: row[p] for p in PARAMS}, with_returns=True)
        got = oos.filter(pl.col("window") == w.index)["returns"].to_numpy()
        np.testing.assert_allclose(got, r.astype(np.float32), rtol=0, atol=0)  # the workers' float32 returns
        assert row["test_sharpe"] == pytest.approx(m["sharpe"], rel=1e-12)
        assert row["test_final_value"] == pytest.approx(m["final_value"], rel=1e-12)
    r = oos["returns"].to_numpy()
    capital = result.meta["capital_base"]
    want = compute_metrics(capital * np.cumprod(1.0 + r), capital, demo.periods_per_year)
    assert result.oos_metrics["total_return"] == pytest.approx(np.prod(1.0 + r) - 1.0)
    assert result.oos_metrics.keys() == want.keys()
    assert all(math.isnan(v) and math.isnan(want[n]) or v == want[n] for n, v in result.oos_metrics.items())
    mean_is, mean_oos = result.windows["train_cagr"].mean(), result.windows["test_cagr"].mean()
    if mean_is > 0:
        assert result.walk_forward_efficiency == pytest.approx(mean_oos / mean_is)
    else:
        assert math.isnan(result.walk_forward_efficiency)
    stab = {r["parameter"]: r for r in result.parameter_stability.iter_rows(named=True)}
    fast = result.windows["fast"].to_numpy().astype(float)
    assert stab["fast"]["cv"] == pytest.approx(fast.std() / fast.mean())
    values, counts = np.unique(fast, return_counts=True)
    assert stab["fast"]["mode_fraction"] == pytest.approx(counts.max() / len(fast))
    assert "walk-forward efficiency" in result.summary()


def test_all_windows_run_concurrently(result):
    tl = result.timeline
    # Every window had trials dispatched before any window had its last result: they overlapped.
    assert tl["first_dispatch_s"].max() < tl["last_result_s"].min()
    # 12 train + 3 validation + 1 test trials per window; a validation trial on the bars and parameters
    # of the previous window's test (validation and test are both 60 days) may be answered from it.
    assert (tl["trials_run"] + tl["trials_reused"] == 12 + 3 + 1).all()
    # One scheduler run for all windows, with batches queued on both workers at once.
    assert result.stats.trials == tl["trials_run"].sum() and result.stats.max_inflight >= 2


def test_journal_rerun_reuses_every_trial(pool, demo, tmp_path):
    journal = tmp_path / "wf.jsonl"
    opt = wf(pool)
    first = opt.run(SmaCrossover, demo, START, END, journal=journal)
    assert opt.last_stats.trials == first.timeline["trials_run"].sum() > 12 * 15
    # Keys hold each trial's own dates: the train trials of window 2 are the keys of its train segment.
    w = first.window_specs[2]
    job = {"strategy": strategy_fingerprint(SmaCrossover), "bundle_version": demo.version,
           "start": str(w.train.first), "end": str(w.train.last), "capital_base": 100_000.0,
           "commission": "None", "slippage": "None", "fill_price": "open"}
    keys = {json.loads(line)["key"] for line in journal.read_text().splitlines()}
    assert trial_key(job, {"fast": 5, "slow": 30}) in keys
    again = wf(pool)
    second = again.run(SmaCrossover, demo, START, END, journal=journal)
    assert again.last_stats.trials == 0  # nothing ran
    assert (second.timeline["trials_run"] == 0).all()
    assert second.windows.equals(first.windows)
    assert second.oos_returns.equals(first.oos_returns)
    assert all((r.trials["attempts"] == 0).all() for r in second.train_results)


def test_algorithm_factory_and_template(pool, demo):
    short = ("2018-01-01", "2019-03-31")
    by_factory = wf(pool, algorithm=lambda s: RandomSearchAlgorithm(s, n_trials=4, seed=3)).run(
        SmaCrossover, demo, *short)
    by_template = wf(pool, algorithm=RandomSearchAlgorithm(space(), n_trials=4, seed=3)).run(
        SmaCrossover, demo, *short)
    assert [len(r) for r in by_factory.train_results] == [4] * by_factory.windows.height
    assert by_template.windows.select(PARAMS).equals(by_factory.windows.select(PARAMS))
    assert by_factory.meta["algorithm"] == "RandomSearchAlgorithm"


def test_minimized_objective_selects_the_smallest_on_validation(pool, demo):
    res = wf(pool, objective="max_drawdown").run(SmaCrossover, demo, "2018-01-01", "2019-03-31")
    assert res.direction == "minimize"
    for k in range(res.windows.height):
        cand = res.validation.filter(pl.col("window") == k).sort("candidate")
        assert (np.diff(cand["train_max_drawdown"].to_numpy()) >= 0).all()  # train top-k, smallest first
        best = int(np.nanargmin(cand["validation_max_drawdown"].to_numpy()))
        assert res.windows["train_rank"][k] == best


@pytest.mark.parametrize("kwargs, match", [
    (dict(top_k=0), "top_k"),
    (dict(algorithm="grid"), "algorithm"),
    (dict(n_jobs=0), "n_jobs"),
    (dict(objective="nope"), "unknown objective"),
])
def test_bad_arguments(kwargs, match):
    from rustybt_ray.errors import RustyBTError

    with pytest.raises(RustyBTError, match=match):
        WalkForwardOptimizer(space(), CONFIG, **kwargs)
    with pytest.raises(RustyBTError, match="window_config"):
        WalkForwardOptimizer(space(), {"train_period_days": 5})  # type: ignore[arg-type]


def test_to_parquet_round_trips_the_tables(result, tmp_path):
    from rustybt_ray.optimization import OptimizationResult

    d = result.to_parquet(tmp_path / "wf")
    assert pl.read_parquet(d / "windows.parquet").equals(result.windows)
    assert pl.read_parquet(d / "oos_returns.parquet").equals(result.oos_returns)
    assert OptimizationResult.read_parquet(d / "train_3.parquet") == result.train_results[3]
    summary = json.loads((d / "summary.json").read_text())
    assert summary["objective"] == "sharpe" and summary["oos_metrics"]["n_bars"] == result.oos_returns.height
