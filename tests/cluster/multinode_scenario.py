"""Two-node Ray scenario for ``test_multinode.py``, run in its own process; prints one JSON line.

It needs its own Ray session (a ``ray.cluster_utils.Cluster``), which cannot live in
the test process beside the session-scoped local Ray.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
import warnings

import ray
from ray.cluster_utils import Cluster

from rustybt_ray.cluster import JobSpec, WorkerPool, default_store
from rustybt_ray.data import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import (
    DiscreteParameter,
    GridSearchAlgorithm,
    OptimizationConfig,
    ParallelOptimizer,
    ParameterSpace,
)


def main() -> dict:
    """Start a 2-node cluster, run a pool on it, report where actors and bundle copies are."""
    store_mb = 128 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store_mb,
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=store_mb)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        out: dict = {"nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])}
        demo = load_bundle("demo")
        with WorkerPool() as pool:  # default size: one per cluster CPU, so 2
            ref = pool.store.put(demo)
            spec = JobSpec(uuid.uuid4().hex, SmaCrossover, [ref], demo.version, "2015-01-01", "2015-12-31", 1e5)
            pool.prepare(spec)
            out["workers"] = len(pool.workers)
            out["actor_nodes"] = sorted(i["node_id"] for i in pool.info())
            # Locations are reported asynchronously; give the directory a moment.
            for _ in range(50):
                loc = ray.experimental.get_object_locations([ref])[ref]
                if len(loc["node_ids"]) >= 2:
                    break
                time.sleep(0.1)
            out["object_nodes"] = sorted(loc["node_ids"])
            outcomes = ray.get([a.run_batch.remote(spec.job_id, [(0, {"fast": 5, "slow": 20})])
                                for a in pool.workers.values()])
            out["metrics_equal"] = outcomes[0][0].metrics == outcomes[1][0].metrics
            out["statuses"] = [o[0].status for o in outcomes]
            pool.release(spec.job_id)
            # A whole sweep on the two nodes equals the same trials run in one process.
            space = ParameterSpace(parameters=[DiscreteParameter("fast", 5, 15, 5),
                                               DiscreteParameter("slow", 30, 40, 10)])
            sweep = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, progress=False).run(
                SmaCrossover, demo, "2015-01-01", "2016-12-31")
            single = {(p["fast"], p["slow"]): run_metrics(SmaCrossover, demo, "2015-01-01", "2016-12-31",
                                                          params=p)[0]["final_value"] for p in space.grid()}
            out["sweep_complete"] = sweep.n_complete
            out["sweep_equal_single_node"] = all(
                row["final_value"] == single[(row["fast"], row["slow"])] for row in sweep.trials.iter_rows(named=True))
            out["sweep_workers_used"] = len(set(sweep.trials["worker"].to_list()))
        # A new driver connection (new job on the same cluster): refs of the old one are dead,
        # so the store must forget them and put again.
        puts = default_store().stats()["puts"]
        ray.shutdown()
        out["entries_after_shutdown"] = len(default_store())
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        ref2 = default_store().put(demo)
        out["put_again_after_reconnect"] = default_store().stats()["puts"] - puts
        out["new_ref_works"] = ray.get(ref2).version == demo.version
        ray.shutdown()
        # ParallelOptimizer(address=...) connects to the running cluster itself.
        space = ParameterSpace(parameters=[DiscreteParameter("fast", 5, 10, 5), DiscreteParameter("slow", 30, 30, 1)])
        by_address = ParallelOptimizer(GridSearchAlgorithm(space), address=cluster.address, progress=False).run(
            SmaCrossover, demo, "2015-01-01", "2015-12-31")
        out["address_connected_nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        out["address_sweep_complete"] = by_address.n_complete
        autoscaling(cluster, store_mb, demo, space, out)
        ray.shutdown()
        return out
    finally:
        cluster.shutdown()


def autoscaling(cluster: Cluster, store_mb: int, demo: object, space: ParameterSpace, out: dict) -> None:
    """More workers than CPUs on a multi-node cluster: extra actors wait for a node, then are dropped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # A node joins while the third worker waits (what an autoscaler does).
        with WorkerPool(3, OptimizationConfig(worker_start_timeout_s=120)) as pool:
            cluster.add_node(num_cpus=1, object_store_memory=store_mb)
            spec = JobSpec(uuid.uuid4().hex, SmaCrossover, [pool.store.put(demo)], demo.version,
                           "2015-01-01", "2015-12-31", 1e5)
            pool.prepare(spec)
            out["joined_workers"] = len(pool.workers)
            out["joined_actor_nodes"] = len({i["node_id"] for i in pool.info()})
            out["joined_cpus_per_worker"] = pool.cpus_per_worker
            pool.release(spec.job_id)
        # No node joins: the worker that finds no CPU is dropped and the sweep runs on the rest.
        with WorkerPool(4, OptimizationConfig(worker_start_timeout_s=3)) as pool:
            sweep = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, progress=False).run(
                SmaCrossover, demo, "2015-01-01", "2015-12-31")
            out["dropped_workers_left"] = len(pool.workers)
            out["dropped_sweep_complete"] = sweep.n_complete
    out["autoscaling_warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


if __name__ == "__main__":
    result = main()
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
