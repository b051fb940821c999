"""``fractional_shares`` in sweep files and ``--fractional-shares`` on the command line, in real processes.

Capital 1,000 over the demo bundle's 8 assets, so whole-share rounding matters (SPY at
about 250 buys 0 whole shares with a 125 position, but half a share).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from cli_output import one_line_error

from rustybt_ray import load_bundle
from rustybt_ray.app.cli import main
from rustybt_ray.app.sweep_config import SweepConfig
from rustybt_ray.engine import run_algorithm, run_metrics
from rustybt_ray.errors import ConfigError
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimize import OptimizationResult

SWEEP = """
strategy = "rustybt_ray.examples.sma_crossover:{strategy}"
bundle = "demo"
start = 2017-01-01
end = 2018-06-30
capital = 1000
output = "out"
workers = 2
{flag}

[space.parameters]
fast = {{ type = "int", low = 5, high = 10, step = 5 }}
slow = {{ type = "int", low = 30, high = 60, step = 30 }}

[search]
algorithm = "grid"
"""
START, END = "2017-01-01", "2018-06-30"

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # RAY_ADDRESS=local: the command starts its own Ray and stops it, whatever else runs here.
    env = dict(os.environ, RAY_ADDRESS="local", RAY_DEDUP_LOGS="0")
    return subprocess.run([sys.executable, "-m", "rustybt_ray", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_sweep_file_with_fractional_shares_runs_fractional_trials(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP.format(strategy="SmaCrossover", flag="fractional_shares = true"))
    run = cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    assert json.loads((out / "sweep.json").read_text())["fractional_shares"] is True
    trials = OptimizationResult.read_parquet(out / "results.parquet").trials
    assert trials.height == 4 and (trials["status"] == "complete").all()
    demo = load_bundle("demo")
    differ = 0
    for row in trials.iter_rows(named=True):
        params = {"fast": row["fast"], "slow": row["slow"]}
        frac, _ = run_metrics(SmaCrossover, demo, START, END, 1000.0, params, fractional_shares=True)
        whole, _ = run_metrics(SmaCrossover, demo, START, END, 1000.0, params)
        assert row["final_value"] == frac["final_value"] and row["sharpe"] == frac["sharpe"]
        differ += whole["final_value"] != frac["final_value"]
    assert differ >= 1


@pytest.mark.parametrize("value", ['"yes"', "1", '"true"'])
def test_a_non_bool_fractional_shares_is_one_line_exit_2(tmp_path, value):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP.format(strategy="SmaCrossover", flag=f"fractional_shares = {value}"))
    with pytest.raises(ConfigError, match="fractional_shares: expected true or false"):
        SweepConfig.from_toml(sweep)
    if value == '"yes"':  # one real process is enough to show the user's view
        run = cli("optimize", str(sweep), "--no-progress", cwd=tmp_path)
        assert run.returncode == 2
        one_line_error(run.stderr, "fractional_shares: expected true or false", "'yes'")
        assert not (tmp_path / "out").exists()  # refused before anything was written


def test_the_flag_reaches_validation_before_ray_starts(tmp_path, capsys):
    # A vector strategy cannot trade fractions: --fractional-shares on a file without the key is refused.
    sweep = tmp_path / "vector.toml"
    sweep.write_text(SWEEP.format(strategy="SmaCrossoverVector", flag=""))
    was_running = ray.is_initialized()
    assert main(["optimize", str(sweep), "--no-progress", "--fractional-shares"]) == 2
    assert ray.is_initialized() == was_running
    one_line_error(capsys.readouterr().err, "SmaCrossoverVector", "whole shares only")
    assert not (tmp_path / "out").exists()
    # The same file in the file itself: the same refusal.
    sweep.write_text(SWEEP.format(strategy="SmaCrossoverVector", flag="fractional_shares = true"))
    assert main(["optimize", str(sweep), "--no-progress"]) == 2
    one_line_error(capsys.readouterr().err, "event-engine strategy")


def test_run_with_fractional_shares(tmp_path):
    args = ["run", "--capital", "1000", "--start", START, "--end", END, "--param", "fast=5", "--param", "slow=30",
            "--json"]
    frac = cli(*args, "--fractional-shares", cwd=tmp_path)
    whole = cli(*args, cwd=tmp_path)
    assert frac.returncode == 0 and whole.returncode == 0, frac.stderr[-2000:] + whole.stderr[-2000:]
    got = json.loads(frac.stdout.strip().splitlines()[-1])["metrics"]
    want = run_algorithm(SmaCrossover, "demo", START, END, 1000.0, {"fast": 5, "slow": 30},
                         fractional_shares=True).metrics
    assert got["final_value"] == want["final_value"]
    assert json.loads(whole.stdout.strip().splitlines()[-1])["metrics"]["final_value"] != want["final_value"]
