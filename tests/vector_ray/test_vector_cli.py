"""``rustybt-ray optimize`` with a sweep file naming a VectorStrategy, in its own process with its own local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rustybt_ray.data import load_bundle
from rustybt_ray.engine.run import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
from rustybt_ray.optimize import OptimizationResult
from vector_ray_kit import assert_metrics_close

SWEEP = """
strategy = "rustybt_ray.examples.sma_crossover:SmaCrossoverVector"
bundle = "demo"
start = 2016-01-01
end = 2018-12-31
output = "out"
workers = 2

[space]
constraints = ["fast < slow"]

[space.parameters]
fast = { type = "int", low = 5, high = 15, step = 5 }
slow = { type = "int", low = 30, high = 60, step = 30 }

[search]
algorithm = "grid"

[objective]
metric = "sharpe"
"""


def test_optimize_a_vector_strategy_from_a_sweep_file(tmp_path: Path):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    # RAY_ADDRESS=local: the command starts its own Ray and stops it, whatever else runs here.
    env = dict(os.environ, RAY_ADDRESS="local", RAY_DEDUP_LOGS="0")
    run = subprocess.run([sys.executable, "-m", "rustybt_ray", "optimize", "sweep.toml", "--no-progress",
                          "--no-plots"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    result = OptimizationResult.read_parquet(out / "results.parquet")
    assert len(result) == 6 and result.n_complete == 6
    demo = load_bundle("demo")
    for row in result.trials.iter_rows(named=True):
        want, _ = run_metrics(SmaCrossoverVector, demo, "2016-01-01", "2018-12-31",
                              params={"fast": row["fast"], "slow": row["slow"]})
        assert_metrics_close(row, want, what=f"fast={row['fast']} slow={row['slow']}")
    for _, grp in result.trials.group_by("worker"):
        assert grp["duration_s"].n_unique() == 1  # batched: a kernel call's wall shared by its trials
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and 0.0 <= summary["overfitting"]["pbo"] <= 1.0


def test_run_a_vector_strategy(tmp_path: Path):
    # `rustybt-ray run` takes a VectorStrategy unchanged; its numbers are the kernel's.
    from rustybt_ray.vector import run_vector

    run = subprocess.run([sys.executable, "-m", "rustybt_ray", "run", "rustybt_ray.examples.sma_crossover:"
                          "SmaCrossoverVector", "--bundle", "demo", "--start", "2016-01-01", "--end", "2018-12-31",
                          "--param", "fast=15", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)
    metrics = got.get("metrics", got)
    want, _ = run_vector(SmaCrossoverVector, load_bundle("demo"), "2016-01-01", "2018-12-31", params={"fast": 15})
    assert_metrics_close(metrics, want, what="rustybt-ray run")
    assert want["n_transactions"] > 0
