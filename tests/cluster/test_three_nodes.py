"""The same sweeps on a 3-node ``ray.cluster_utils.Cluster`` and on one local node give equal trials tables.

The cluster needs its own Ray session, so the scenario runs in a subprocess
(``three_node_scenario.py``) that writes both runs' tables as Parquet and prints a JSON line.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from rustybt_ray.data import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover

SCRIPT = Path(__file__).with_name("three_node_scenario.py")
sys.path.insert(0, str(SCRIPT.parent))
import three_node_scenario as scenario_module  # noqa: E402  (beside this file, not a package)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Run the scenario once; its report and table directory are shared by the tests below."""
    out_dir = tmp_path_factory.mktemp("three_nodes")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out_dir)], capture_output=True, text=True, timeout=540)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"scenario failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):]), out_dir


def test_workers_spread_over_three_nodes(scenario):
    report, _ = scenario
    assert report["nodes"] == 3 and report["local_nodes"] == 1
    assert report["cluster"]["workers"] == 3 and report["cluster"]["actor_nodes"] == 3
    # Every node's actor ran trials of each sweep.
    assert report["cluster"]["vector_workers_used"] == 3
    assert report["cluster"]["event_workers_used"] == 3


@pytest.mark.parametrize("kind, n", [("vector", scenario_module.VECTOR_TRIALS), ("event", scenario_module.EVENT_TRIALS)])
def test_trials_tables_equal_single_node(scenario, kind: str, n: int):
    _, out_dir = scenario
    cluster = pl.read_parquet(out_dir / f"cluster_{kind}.parquet")
    local = pl.read_parquet(out_dir / f"local_{kind}.parquet")
    assert cluster.height == local.height == n
    assert cluster["number"].to_list() == list(range(n))
    assert set(cluster["status"].to_list()) == {"complete"}
    assert cluster.columns == local.columns and {"fast", "slow", "sharpe", "final_value", "status"} <= set(cluster.columns)
    assert cluster.equals(local, null_equal=True)
    assert all(f < s for f, s in zip(cluster["fast"], cluster["slow"]))


def test_event_trials_equal_an_independent_in_process_backtest(scenario):
    """Not only the two runs agree: a few trials equal a backtest run here without Ray."""
    _, out_dir = scenario
    table = pl.read_parquet(out_dir / "cluster_event.parquet")
    demo = load_bundle("demo")
    for row in table.head(3).iter_rows(named=True):
        metrics = run_metrics(SmaCrossover, demo, "2015-01-01", "2016-12-31",
                              params={"fast": row["fast"], "slow": row["slow"]})[0]
        assert math.isclose(row["final_value"], metrics["final_value"], rel_tol=0, abs_tol=0)
