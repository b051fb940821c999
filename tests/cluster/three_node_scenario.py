"""Three-node Ray scenario for ``test_three_nodes.py``, run in its own process; prints one JSON line.

The same two sweeps (a vectorized SMA random search, an event-engine one) run on a
``ray.cluster_utils.Cluster`` of a head and two nodes, then on a single-node local Ray;
the trials tables (params, metrics, status) are written as Parquet for the test to compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from rustybt_ray.cluster import WorkerPool
from rustybt_ray.data import load_bundle
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverVector
from rustybt_ray.optimization import DiscreteParameter, ParallelOptimizer, ParameterSpace, RandomSearchAlgorithm

SPACE = ParameterSpace([DiscreteParameter("fast", 2, 50), DiscreteParameter("slow", 10, 200)], ["fast < slow"])
VECTOR_TRIALS, EVENT_TRIALS = 300, 24
# Columns that say where and how fast a trial ran, not what it computed.
PLACEMENT = ("worker", "duration_s", "attempts")


def sweeps(pool: WorkerPool, out_dir: Path, tag: str) -> dict:
    """Run both sweeps on ``pool``; write their tables (placement columns dropped); report placement."""
    demo = load_bundle("demo")
    report: dict = {}
    for kind, strategy, n, start, end in (("vector", SmaCrossoverVector, VECTOR_TRIALS, "2015-01-01", "2024-12-31"),
                                          ("event", SmaCrossover, EVENT_TRIALS, "2015-01-01", "2016-12-31")):
        opt = ParallelOptimizer(RandomSearchAlgorithm(SPACE, n_trials=n, seed=11), pool=pool, progress=False)
        result = opt.run(strategy, demo, start, end)
        table = result.trials.sort("number")
        report[f"{kind}_workers_used"] = table["worker"].n_unique()
        report[f"{kind}_complete"] = result.n_complete
        table.drop([c for c in PLACEMENT if c in table.columns]).write_parquet(out_dir / f"{tag}_{kind}.parquet")
    return report


def main(out_dir: Path) -> dict:
    """The sweeps on 3 nodes, then on one local node."""
    store = 128 * 2**20
    out: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                            "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=store)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        out["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        with WorkerPool() as pool:  # one worker per cluster CPU: 3, spread one per node
            out["cluster"] = sweeps(pool, out_dir, "cluster")
            out["cluster"]["workers"] = len(pool.workers)
            out["cluster"]["actor_nodes"] = len({i["node_id"] for i in pool.info()})
    finally:
        ray.shutdown()  # first: the cluster refuses to remove the node a driver is connected to
        cluster.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        out["local_nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        with WorkerPool(2) as pool:
            out["local"] = sweeps(pool, out_dir, "local")
    finally:
        ray.shutdown()
    return out


if __name__ == "__main__":
    result = main(Path(sys.argv[1]))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
