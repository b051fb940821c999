"""A pool on a two-node cluster: actors spread over nodes, one bundle copy per node.

The cluster needs its own Ray session, so the scenario runs in a subprocess
(``multinode_scenario.py``) that prints its findings as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("multinode_scenario.py")


@pytest.fixture(scope="module")
def scenario() -> dict:
    """Run the scenario once; its output is shared by the assertions below."""
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=150)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"scenario failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_pool_spreads_one_actor_per_node(scenario):
    assert len(scenario["nodes"]) == 2
    assert scenario["workers"] == 2
    assert scenario["actor_nodes"] == scenario["nodes"]  # SPREAD: one on each node


def test_bundle_has_one_copy_per_node(scenario):
    # Put once on the driver's node; preparing pulled it once into the other node's store.
    assert scenario["object_nodes"] == scenario["nodes"]


def test_trials_agree_across_nodes(scenario):
    assert scenario["statuses"] == ["complete", "complete"] and scenario["metrics_equal"]


def test_store_forgets_refs_of_a_previous_driver(scenario):
    assert scenario["entries_after_shutdown"] == 0
    assert scenario["put_again_after_reconnect"] == 1 and scenario["new_ref_works"]


def test_sweep_on_two_nodes_equals_single_node(scenario):
    assert scenario["sweep_complete"] == 6  # fast 5, 10, 15 x slow 30, 40
    assert scenario["sweep_equal_single_node"]
    assert scenario["sweep_workers_used"] == 2  # both nodes' actors ran trials


def test_optimizer_connects_to_an_existing_cluster_by_address(scenario):
    assert scenario["address_connected_nodes"] == 2  # it joined the 2-node cluster, not a new local Ray
    assert scenario["address_sweep_complete"] == 2


def test_extra_workers_wait_for_a_joining_node_instead_of_sharing_cpus(scenario):
    """On a multi-node cluster a pool asks for whole CPUs, so an autoscaler can add nodes for it."""
    assert scenario["joined_cpus_per_worker"] == 1.0
    assert scenario["joined_workers"] == 3 and scenario["joined_actor_nodes"] == 3
    assert any("wait for nodes to join" in w for w in scenario["autoscaling_warnings"])


def test_workers_that_find_no_cpu_are_dropped_and_the_sweep_goes_on(scenario):
    assert scenario["dropped_workers_left"] == 3  # 4 asked, 3 CPUs, nobody joined within 3 s
    assert scenario["dropped_sweep_complete"] == 2
    assert any("found no CPU within 3 s" in w for w in scenario["autoscaling_warnings"])
