"""WorkerPool over real Ray: replacement of killed actors, reuse across jobs, caches, close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import ray

from rustybt_ray.cluster import BundleStore, PersistentWorkerPool, WorkerPool, default_store
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.engine.run import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached

P = {"fast": 5, "slow": 20}


def wait_dead(actor, timeout: float = 20.0) -> None:
    """Until a call to ``actor`` fails with an actor error (Ray noticed the death)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(actor.info.remote(), timeout=2)
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            pass
        time.sleep(0.1)
    raise AssertionError("actor still answers")


def test_killed_worker_is_replaced_prepared_with_a_new_id(ray_local, demo, make_spec):
    with WorkerPool(2) as pool:
        spec = make_spec(pool, demo, SmaCrossover)
        pool.prepare(spec)
        infos = {i["worker"]: i for i in pool.info()}
        assert set(infos) == {0, 1} == set(pool.workers)
        victim = pool.workers[0]
        os.kill(infos[0]["pid"], signal.SIGKILL)
        wait_dead(victim)
        assert pool.health_check() == [0]
        assert set(pool.workers) == {1, 2}  # id 0 is never reused
        new = pool.workers[2]
        assert ray.get(new.info.remote())["bundles"] == [demo.version]  # prepared with the active job
        [o] = ray.get(new.run_batch.remote(spec.job_id, [(0, P)]))
        assert o.status == "complete" and o.worker == 2
        assert o.metrics == run_metrics(SmaCrossover, demo, spec.start, spec.end, 100_000.0, P)[0]
        assert pool.health_check(timeout_s=30) == []  # all healthy now
        # A direct replace kills the old actor too.
        old = pool.workers[1]
        assert pool.replace(1) == 3 and set(pool.workers) == {2, 3}
        wait_dead(old)


def test_busy_worker_still_answers_health_checks(ray_local, demo, make_spec):
    class Slow(SmaCrossover):  # a local class: cloudpickle ships it by value
        def initialize(self) -> None:
            time.sleep(3.0)

    with WorkerPool(1) as pool:
        spec = make_spec(pool, demo, Slow)
        pool.prepare(spec)
        actor = pool.workers[0]
        busy = [actor.run_batch.remote(spec.job_id, [(0, P)]) for _ in range(2)]
        time.sleep(0.5)
        # Two 3 s batches are queued; the ping goes to the control group and answers at once.
        assert pool.health_check(timeout_s=2.0) == []
        assert set(pool.workers) == {0}
        ray.cancel(busy[1])


def test_close_kills_every_actor_and_is_idempotent(ray_local):
    pool = PersistentWorkerPool(n_jobs=2)
    actors = list(pool.workers.values())
    assert len(actors) == 2
    ray.get([a.info.remote() for a in actors])
    pool.close()
    pool.close()
    assert pool.closed and pool.workers == {}
    for a in actors:
        wait_dead(a)
    with pytest.raises(RuntimeError, match="closed"):
        pool.health_check()


def test_one_pool_runs_two_jobs_and_keeps_its_cache(pool2, demo, make_spec):
    pool2.clear_cache()
    wid, actor = min(pool2.workers.items())
    first = make_spec(pool2, demo, SmaCrossoverCached)
    second = make_spec(pool2, demo.slice("2010-01-01", "2012-12-31"), SmaCrossover, "2010-01-01", "2012-12-31")
    pool2.prepare(first)
    pool2.prepare(second)
    assert set(pool2.active_jobs) >= {first.job_id, second.job_id}
    a = ray.get(actor.run_batch.remote(first.job_id, [(0, P)]))[0]
    after_first = pool2.cache_stats()
    b = ray.get(actor.run_batch.remote(first.job_id, [(1, P)]))[0]
    c = ray.get(actor.run_batch.remote(second.job_id, [(0, P)]))[0]
    assert a.metrics == b.metrics and a.status == b.status == c.status == "complete"
    stats = pool2.cache_stats()
    # The second identical trial reused both moving averages from the first's cache.
    assert stats["hits"] - after_first["hits"] == 2 and stats["misses"] == after_first["misses"] == 2
    assert 0 < stats["hit_rate"] < 1 and stats["entries"] == 2 and stats["bytes"] > 0
    mine = next(p for p in stats["per_worker"] if p["worker"] == wid)
    assert mine["hits"] == 2 and len(stats["per_worker"]) == 2
    pool2.release(first.job_id)
    assert ray.get(actor.info.remote())["bundles"] == [second.bundle_version]  # the first job's bundle is dropped
    pool2.release(second.job_id)
    pool2.clear_cache()
    assert pool2.cache_stats()["entries"] == 0


def test_config_sets_cache_bounds_and_store(ray_local):
    config = OptimizationConfig(enable_caching=False, cache_size_gb=0.5, lru_maxsize=7,
                                enable_bundle_pooling=False, n_workers=1)
    with WorkerPool(config=config) as pool:
        [s] = pool.cache_stats()["per_worker"]
        assert (s["max_bytes"], s["max_entries"]) == (config.cache_size_bytes, 7)
        assert len(pool.workers) == 1
        assert pool.store is not default_store() and not pool.store.enabled
    with WorkerPool(1, OptimizationConfig(max_bundle_pool_size=3)) as pool:
        assert pool.store is not default_store() and pool.store.max_entries == 3
    mine = BundleStore(max_entries=5)
    with WorkerPool(1, store=mine) as pool:
        assert pool.store is mine
    with pytest.raises(ValueError, match="disagree"):
        WorkerPool(1, n_jobs=2)


def test_pool_refuses_work_after_a_ray_restart():
    """Runs in a subprocess: restarting Ray here would take the session-scoped Ray down."""
    code = (
        "import ray\n"
        "from rustybt_ray.cluster import WorkerPool\n"
        "ray.init(address=\"local\", num_cpus=1, include_dashboard=False, log_to_driver=False)\n"
        "pool = WorkerPool(1)\n"
        "ray.shutdown()\n"
        "try:\n"
        "    pool.health_check()\n"
        "except RuntimeError as e:\n"
        "    print('REFUSED', 'restarted' in str(e))\n"
        "pool.close()\n"
        "print('CLOSED', pool.closed)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "REFUSED True" in out and "CLOSED True" in out, out


@ray.remote(num_cpus=1)
class _CpuHolder:
    """Holds a CPU, as another sweep's workers (or a leaked actor) would."""

    def ping(self) -> int:
        return os.getpid()


def test_oversubscribed_pool_shares_only_the_free_cpus(ray_local, demo, make_spec):
    """n workers > CPUs on one node: they share what is free, none waits worker_start_timeout_s.

    Sharing the total instead (4 CPUs / 6 workers = 0.67 each) would leave some of them
    unplaced while the holder (and the module's two-worker pool, if it is up) keep their CPUs,
    and prepare() would drop them after the timeout with a warning.
    """
    holder = _CpuHolder.remote()
    ray.get(holder.ping.remote())
    try:
        free = ray.available_resources().get("CPU", 0.0)
        assert 0 < free <= 3.0
        with pytest.warns(RuntimeWarning, match="share them"):
            pool = WorkerPool(6, OptimizationConfig(worker_start_timeout_s=30))
        with pool:
            assert pool.cpus_per_worker * 6 <= free
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("error")  # "found no CPU" would be raised here
                pool.prepare(make_spec(pool, demo, SmaCrossover))
            assert len(pool) == 6
            pids = {info["pid"] for info in pool.info()}
            assert len(pids) == 6
    finally:
        ray.kill(holder)
