"""The user's commands end to end, each in its own process with its own local Ray: demo, optimize, results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rustybt_ray.optimize import OptimizationResult

SMALL = """
strategy = "rustybt_ray.examples.sma_crossover:SmaCrossover"
bundle = "demo"
start = 2016-01-01
end = 2018-12-31
output = "out"
workers = 2

[space]
constraints = ["fast < slow"]

[space.parameters]
fast = {{ type = "int", low = 5, high = 15, step = 5 }}
slow = {{ type = "int", low = 30, high = 60, step = 30 }}

[search]
{search}

[objective]
metric = "sharpe"
{extra}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # RAY_ADDRESS=local: the command starts its own Ray and stops it, whatever else runs here.
    env = dict(os.environ, RAY_ADDRESS="local", RAY_DEDUP_LOGS="0")
    return subprocess.run([sys.executable, "-m", "rustybt_ray", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def png_ok(path: Path) -> None:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] >= 200 and img.shape[1] >= 300, img.shape
    flat = img.reshape(-1, img.shape[-1])
    assert len(np.unique(flat, axis=0)) > 20  # not blank: many distinct colours


def test_optimize_results_and_resume(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SMALL.format(search='algorithm = "grid"', extra=""))
    run = cli("optimize", str(sweep), "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    result = OptimizationResult.read_parquet(out / "results.parquet")
    assert len(result) == 6 and result.n_complete == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["best"]["number"] == result.best["number"]
    assert 0 <= summary["overfitting"]["pbo"] <= 1 and summary["reused_trials"] == 0
    assert f"best: trial #{result.best['number']}" in run.stdout
    png_ok(out / "plots" / "heatmap.png")
    png_ok(out / "plots" / "equity.png")
    assert len((out / "journal.jsonl").read_text().splitlines()) == 6

    shown = cli("results", str(out), cwd=tmp_path)
    assert shown.returncode == 0 and "finished; 6 trials so far" in shown.stdout
    lines = shown.stdout.splitlines()
    best_row = lines[next(i for i, line in enumerate(lines) if line.startswith("╞")) + 1]
    assert f"│ {result.best['number']} " in best_row  # the top row is the best trial

    again = cli("optimize", str(sweep), "--no-progress", cwd=tmp_path)
    assert again.returncode == 2 and "already holds a sweep: pass --resume" in again.stderr
    resumed = cli("optimize", str(sweep), "--no-progress", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reused_trials"] == 6 and summary["scheduler"]["trials_run"] == 0
    assert OptimizationResult.read_parquet(out / "results.parquet").trials.drop(["attempts", "duration_s", "worker"]) \
        .equals(result.trials.drop(["attempts", "duration_s", "worker"]))


def test_results_of_a_running_sweep_reads_the_journal(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SMALL.format(search='algorithm = "grid"', extra=""))
    assert cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path).returncode == 0
    out = tmp_path / "out"
    (out / "summary.json").unlink()  # as if the sweep were still running
    (out / "results.parquet").unlink()
    shown = cli("results", str(out), cwd=tmp_path)
    assert shown.returncode == 0 and "running (or stopped before the end); 6 trials so far" in shown.stdout
    bad = cli("results", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and "not a sweep output directory" in bad.stderr


def test_tpe_sweep_file_with_pruning_resumes_its_study(tmp_path):
    sweep = tmp_path / "tpe.toml"
    sweep.write_text(SMALL.format(search='algorithm = "tpe"\nn_trials = 8\nseed = 1\npruner = "median"', extra=""))
    first = cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out"
    assert (out / "study.db").exists()
    import optuna

    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    ran = [t for t in study.trials if t.state.is_finished() and "rustybt_ray_not_run" not in t.user_attrs]
    assert len(ran) == 8
    again = cli("optimize", str(sweep), "--no-progress", "--no-plots", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["scheduler"]["trials_run"] == 0  # finished study


def test_walk_forward_sweep_file(tmp_path):
    sweep = tmp_path / "wf.toml"
    extra = """
[walk_forward]
train_period_days = 365
validation_period_days = 91
test_period_days = 91
top_k = 2
"""
    sweep.write_text(SMALL.format(search='algorithm = "grid"', extra=extra))
    run = cli("optimize", str(sweep), "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    windows = pl.read_parquet(tmp_path / "out" / "walk_forward" / "windows.parquet")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kind"] == "walk_forward" and summary["windows"] == windows.height >= 3
    png_ok(tmp_path / "out" / "plots" / "walk_forward.png")


def test_config_errors_name_the_key(tmp_path):
    sweep = tmp_path / "bad.toml"
    sweep.write_text(SMALL.format(search='algorithm = "grid"\nn_trails = 3', extra=""))
    run = cli("optimize", str(sweep), cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == "rustybt-ray: error: search.n_trails: unknown key; did you mean 'n_trials'?"


def test_demo_writes_results_and_plots(tmp_path):
    run = cli("demo", "--output", str(tmp_path / "demo"), "--workers", "2", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "demo"
    summary = json.loads((out / "summary.json").read_text())
    grid = OptimizationResult.read_parquet(out / "grid_results.parquet")
    assert summary["grid"]["trials"] == len(grid) >= 200 and grid.n_complete == len(grid)
    assert summary["tpe"]["trials"] == 120 and summary["walk_forward"]["windows"] >= 10
    assert 0 <= summary["grid"]["overfitting"]["dsr"] <= 1
    assert "Top 10 by Sharpe" in run.stdout and "Deflated Sharpe Ratio" in run.stdout
    for name in ("grid_heatmap", "best_equity", "walk_forward"):
        png_ok(out / "plots" / f"{name}.png")
    assert str(out.resolve()) in run.stdout


# A sweep with one mistake each, found before Ray starts: exit status 2, one line, nothing written.
REFUSED = {
    "capital_nan": (("workers = 2", "workers = 2\ncapital = nan"), "capital_base"),
    "start_after_end": (("start = 2016-01-01\nend = 2018-12-31", "start = 2018-12-31\nend = 2016-01-01"),
                        "after end"),
    "objective_no_metric": (('metric = "sharpe"', 'metric = "sharp"'), "unknown objective 'sharp'"),
    "unknown_param": (("slow = {{", "slowww = {{"), "has no parameter 'slowww'"),
    "unknown_bundle": (('bundle = "demo"', 'bundle = "no_such_bundle_xyz"'), "no_such_bundle_xyz"),
    "walk_forward_storage": (('metric = "sharpe"', 'metric = "sharpe"\n[walk_forward]\ntrain_period_days = 252\n'
                                                   'validation_period_days = 0\ntest_period_days = 63'),
                             "does not support storage"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_sweep_is_one_line_and_writes_nothing(tmp_path, case):
    (old, new), message = REFUSED[case]
    template = SMALL.replace(old, new)
    assert template != SMALL
    if case == "unknown_param":  # the constraint names it too, or the space itself is refused first
        template = template.replace('"fast < slow"', '"fast < slowww"')
    search = 'algorithm = "grid"' if case != "walk_forward_storage" else \
        'algorithm = "tpe"\nn_trials = 4\nstorage = "sqlite:///study.db"'
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(template.format(search=search, extra=""))
    run = cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rustybt-ray: error: ") and message in lines[0], run.stderr
    assert not (tmp_path / "out").exists()  # the output directory is untouched
    assert not (tmp_path / "study.db").exists()


def test_the_corrected_rerun_of_a_refused_sweep_needs_no_resume(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SMALL.replace("workers = 2", "workers = 2\ncapital = nan").format(search='algorithm = "grid"',
                                                                                        extra=""))
    refused = cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "out").exists()
    sweep.write_text(SMALL.format(search='algorithm = "grid"', extra=""))
    fixed = cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_complete"] == 6


BROKEN = """
from rustybt_ray import TradingAlgorithm


class Broken(TradingAlgorithm):
    fast = 5
    slow = 30

    def handle_data(self, data):
        raise ZeroDivisionError("the strategy's own bug")
"""


def test_a_sweep_whose_every_trial_failed_exits_nonzero_with_the_error(tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN)
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SMALL.replace('"rustybt_ray.examples.sma_crossover:SmaCrossover"', '"broken.py:Broken"')
                     .format(search='algorithm = "grid"', extra=""))
    run = cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("rustybt-ray: error: all 6 trials failed") and "ZeroDivisionError" in last, last
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_failed"] == 6  # the record is kept
