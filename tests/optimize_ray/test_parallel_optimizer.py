"""ParallelOptimizer end to end on a real local Ray: determinism, failures, dead workers, caches, config."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import polars as pl
import pytest

from rustybt_ray import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached
from rustybt_ray.optimization import (
    DiscreteParameter,
    GridSearchAlgorithm,
    OptimizationConfig,
    ParallelOptimizer,
    ParameterSpace,
    RandomSearchAlgorithm,
    WorkerPool,
)
from rustybt_ray.errors import SearchSpaceError

START, END = "2018-01-01", "2019-12-31"


def sma_space() -> ParameterSpace:
    return ParameterSpace(
        parameters=[
            DiscreteParameter("fast", 5, 20, 5),
            DiscreteParameter("slow", 30, 60, 15),
        ],
        constraints=["fast < slow"],
    )


def numbers(result) -> pl.DataFrame:
    return result.trials.select(["number", "fast", "slow", "sharpe", "final_value", "n_transactions", "status"])


@pytest.fixture(scope="module")
def demo():
    return load_bundle("demo")


@pytest.fixture(scope="module")
def reference(demo):
    """The sweep's numbers computed in-process, trial by trial, without Ray."""
    rows = {}
    for params in sma_space().grid():
        m, _ = run_metrics(SmaCrossover, demo, START, END, params=params)
        rows[(params["fast"], params["slow"])] = m
    return rows


@pytest.mark.parametrize("n_jobs", [1, 2, 4])
def test_same_numbers_for_any_worker_count(ray_session, demo, reference, n_jobs):
    result = ParallelOptimizer(GridSearchAlgorithm(sma_space()), n_jobs=n_jobs, progress=False).run(
        SmaCrossover, demo, START, END
    )
    assert result.n_complete == len(reference) == 12
    for row in result.trials.iter_rows(named=True):
        expected = reference[(row["fast"], row["slow"])]
        assert row["final_value"] == expected["final_value"]  # bit-identical: a pure function of the inputs
        assert row["sharpe"] == expected["sharpe"]
    best = max(reference.items(), key=lambda kv: kv[1]["sharpe"])
    assert (result.best["params"]["fast"], result.best["params"]["slow"]) == best[0]


class SleepySma(SmaCrossover):
    """SMA crossover that sleeps longer for small ``fast``, so trials finish out of order."""

    def initialize(self) -> None:
        time.sleep(0.02 * (25 - self.fast) / 5)


def test_shuffled_completion_order_gives_the_same_table(ray_session, demo):
    config = OptimizationConfig(max_batch_size=1)
    plain = ParallelOptimizer(GridSearchAlgorithm(sma_space()), n_jobs=2, progress=False, config=config).run(
        SmaCrossover, demo, START, END
    )
    seen: list[int] = []
    opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), n_jobs=3, progress=False, config=config)
    shuffled = opt.run(SleepySma, demo, START, END)
    seen = shuffled.trials["number"].to_list()
    assert seen == sorted(seen)  # the table is ordered by trial number whatever the completion order
    assert numbers(shuffled).drop("status").equals(numbers(plain).drop("status"))


class Fragile(SmaCrossover):
    """Raises for one parameter value, as a buggy strategy would."""

    def initialize(self) -> None:
        if self.fast == 10:
            raise ValueError(f"fast={self.fast} is not supported by this strategy")


def test_strategy_exception_fails_only_its_trials(ray_session, demo, reference):
    result = ParallelOptimizer(GridSearchAlgorithm(sma_space()), n_jobs=2, progress=False).run(
        Fragile, demo, START, END
    )
    failed = result.trials.filter(pl.col("status") == "failed")
    assert set(failed["fast"].to_list()) == {10}
    assert all("fast=10 is not supported" in e for e in failed["error"].to_list())
    assert all("Traceback" in e for e in failed["error"].to_list())
    assert (failed["attempts"] == 1).all()  # a strategy bug is not retried
    ok = result.trials.filter(pl.col("status") == "complete")
    assert ok.height == 12 - failed.height
    for row in ok.iter_rows(named=True):
        assert row["final_value"] == reference[(row["fast"], row["slow"])]["final_value"]


class MarkedSma(SmaCrossover):
    """Leaves a marker file named after its process when a trial starts, then works a while."""

    marker_dir = ""

    def initialize(self) -> None:
        with open(os.path.join(self.marker_dir, f"{os.getpid()}-{self.fast}-{self.slow}"), "w"):
            pass
        time.sleep(0.3)


def test_sigkill_a_worker_mid_sweep(ray_session, demo, reference, tmp_path):
    config = OptimizationConfig(max_batch_size=1, batches_in_flight=1)
    with WorkerPool(2, config) as pool:
        opt = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False, config=config)
        victim = pool.info()[0]["pid"]
        box = {}

        def sweep():
            box["result"] = opt.run(MarkedSma, demo, START, END)

        MarkedSma.marker_dir = str(tmp_path)
        th = threading.Thread(target=sweep)
        th.start()
        deadline = time.monotonic() + 60
        # Kill the victim while it is inside a trial (its second one, so the sweep is well under way).
        while len([p for p in os.listdir(tmp_path) if p.startswith(f"{victim}-")]) < 2:
            assert time.monotonic() < deadline, "the victim never started a trial"
            time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        th.join(timeout=120)
        result = box["result"]
    assert opt.last_stats.workers_replaced >= 1
    assert result.trials.height == 12 and result.n_complete == 12
    assert result.trials["number"].n_unique() == 12  # none twice
    assert result.trials["attempts"].max() >= 2  # the killed worker's trial ran again
    for row in result.trials.iter_rows(named=True):
        assert row["final_value"] == reference[(row["fast"], row["slow"])]["final_value"]


class SelfDestruct(SmaCrossover):
    """Kills its own worker process for fast=20: a trial that crashes whatever actor runs it."""

    def initialize(self) -> None:
        if self.fast == 20:
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_trial_that_always_kills_its_worker_fails_after_max_retries(ray_session, demo):
    config = OptimizationConfig(max_retries=1, max_batch_size=1, batches_in_flight=1)
    result = ParallelOptimizer(GridSearchAlgorithm(sma_space()), n_jobs=2, progress=False, config=config).run(
        SelfDestruct, demo, START, END
    )
    killers = result.trials.filter(pl.col("fast") == 20)
    assert (killers["status"] == "failed").all()
    assert (killers["attempts"] == 2).all()  # first run + max_retries=1
    assert all("worker died" in e for e in killers["error"].to_list())
    assert result.trials.filter(pl.col("fast") != 20)["status"].eq("complete").all()


def test_cache_hits_across_trials_and_guide_monitoring(ray_session, demo, reference):
    from rustybt_ray.optimization.bundle_pool import BundleConnectionPool
    from rustybt_ray.optimization.caching import DataCache

    with WorkerPool(1, OptimizationConfig()) as pool:
        result = ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False).run(
            SmaCrossoverCached, demo, START, END
        )
        stats = DataCache.get_instance().get_stats()
        # 12 trials need 2 averages each (24 lookups) over only 4 + 3 distinct windows.
        assert stats["misses"] == 7 and stats["hits"] == 17
        assert stats["hit_rate"] == pytest.approx(17 / 24)
        assert stats["memory_usage_mb"] == pytest.approx(7 * demo.close.nbytes / 1024**2)
        bundles = BundleConnectionPool.get_instance()
        assert demo.version in bundles.bundle_connections
        assert bundles.max_pool_size == 100
    for row in result.trials.iter_rows(named=True):
        assert row["final_value"] == pytest.approx(reference[(row["fast"], row["slow"])]["final_value"], rel=1e-9)


def test_cache_eviction_respects_the_byte_bound(ray_session, demo):
    one_average = demo.close.nbytes
    config = OptimizationConfig(cache_size_gb=2.5 * one_average / 1024**3)
    with WorkerPool(1, config) as pool:
        ParallelOptimizer(GridSearchAlgorithm(sma_space()), pool=pool, progress=False, config=config).run(
            SmaCrossoverCached, demo, START, END
        )
        stats = pool.cache_stats()
    assert stats["bytes"] <= 2.5 * one_average
    assert stats["entries"] <= 2 and stats["evictions"] > 0


def test_config_fields_change_behaviour(ray_session, demo):
    space = sma_space()
    off = OptimizationConfig(enable_caching=False)
    with WorkerPool(1, off) as pool:
        ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, progress=False, config=off).run(
            SmaCrossoverCached, demo, START, END)
        assert pool.cache_stats()["hits"] == 0 and pool.cache_stats()["entries"] == 0
    few = OptimizationConfig(lru_maxsize=3)
    with WorkerPool(1, few) as pool:
        ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, progress=False, config=few).run(
            SmaCrossoverCached, demo, START, END)
        assert pool.cache_stats()["entries"] == 3
    batched = OptimizationConfig(min_batch_seconds=10.0, max_batch_size=4)
    opt = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=1, progress=False, config=batched)
    opt.run(SmaCrossover, demo, START, END)
    assert max(opt.last_stats.batch_sizes) == 4 and opt.last_stats.batch_sizes[0] == 1
    single = OptimizationConfig(max_batch_size=1)
    opt = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=1, progress=False, config=single)
    opt.run(SmaCrossover, demo, START, END)
    assert set(opt.last_stats.batch_sizes) == {1}
    workers = OptimizationConfig(n_workers=3)
    with WorkerPool(None, workers) as pool:
        assert len(pool.workers) == 3
    unpooled = OptimizationConfig(enable_bundle_pooling=False)
    with WorkerPool(1, unpooled) as pool:
        ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, progress=False, config=unpooled).run(
            SmaCrossover, demo, START, END)
        assert demo.version not in pool.store.bundle_connections


def test_random_search_reproducible_and_names_checked(ray_session, demo):
    space = sma_space()
    a = ParallelOptimizer(RandomSearchAlgorithm(space, n_trials=6, seed=7), n_jobs=2, progress=False).run(
        SmaCrossover, demo, START, END)
    b = ParallelOptimizer(RandomSearchAlgorithm(space, n_trials=6, seed=7), n_jobs=1, progress=False).run(
        SmaCrossover, demo, START, END)
    assert numbers(a).equals(numbers(b))
    bad = ParameterSpace(parameters=[DiscreteParameter("nope", 1, 3, 1)])
    with pytest.raises(SearchSpaceError, match="nope"):
        ParallelOptimizer(GridSearchAlgorithm(bad), n_jobs=1, progress=False).run(SmaCrossover, demo, START, END)


def test_parquet_round_trip_of_a_real_sweep(ray_session, demo, tmp_path):
    from rustybt_ray.optimization import OptimizationResult

    result = ParallelOptimizer(GridSearchAlgorithm(sma_space()), n_jobs=2, progress=False).run(
        SmaCrossover, demo, START, END)
    path = tmp_path / "sweep.parquet"
    result.to_parquet(path)
    back = OptimizationResult.read_parquet(path)
    assert back.trials.equals(result.trials)
    assert back.best["number"] == result.best["number"]
    assert (result.trials["duration_s"] > 0).all() and result.trials["duration_s"].is_finite().all()


def test_batches_in_flight_and_returns_fields(ray_session, demo):
    space = sma_space()
    for in_flight, expected in ((1, 2), (3, 6)):
        config = OptimizationConfig(max_batch_size=1, batches_in_flight=in_flight)
        opt = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=2, progress=False, config=config)
        opt.run(SmaCrossover, demo, START, END)
        assert opt.last_stats.max_inflight == expected  # 2 workers x batches_in_flight
    with_returns = OptimizationConfig(return_daily_returns=True)
    result = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=2, progress=False, config=with_returns).run(
        SmaCrossover, demo, START, END)
    i0, i1 = demo.index_range(START, END)
    assert sorted(result.returns) == result.trials["number"].to_list()
    first = result.returns[0]
    assert first.dtype == np.float32 and first.shape == (i1 - i0,)
    params = result.trials.row(0, named=True)
    _, expected = run_metrics(SmaCrossover, demo, START, END, params={"fast": params["fast"], "slow": params["slow"]},
                              with_returns=True)
    np.testing.assert_allclose(first, expected.astype(np.float32))
    plain = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=2, progress=False,
                              config=OptimizationConfig(return_daily_returns=False)).run(SmaCrossover, demo, START, END)
    assert plain.returns == {}
