"""Every user-caused failure of ``rustybt-ray`` is one line naming the problem, exit status 2, no traceback.

Real files and real processes: damaged output directories written here, a path below a
regular file, ``/dev/full`` for a full disk, and ``python -m rustybt_ray`` subprocesses
for what must hold outside pytest (stderr is exactly one line).
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import ray
from cli_output import one_line_error

from rustybt_ray.app.cli import describe_os_error, main

TINY = """
strategy = "rustybt_ray.examples.sma_crossover:SmaCrossover"
bundle = "demo"
start = 2017-01-01
end = 2018-06-30
output = "out"
workers = 2

[space]
constraints = ["fast < slow"]

[space.parameters]
fast = {{ type = "int", low = 5, high = 10, step = 5 }}
slow = {{ type = "int", low = 30, high = 60, step = 30 }}

[search]
{search}

[objective]
metric = "sharpe"
{extra}
"""

WALK_FORWARD = """
[walk_forward]
train_period_days = 182
validation_period_days = 63
test_period_days = 63
top_k = 1
"""


def cli(*args: str, cwd: Path, umask: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS="local", RAY_DEDUP_LOGS="0")
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "rustybt_ray", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=pre)


def run_main(argv: list[str], capsys) -> str:
    was_running = ray.is_initialized()
    assert main(argv) == 2
    assert ray.is_initialized() == was_running  # refused before Ray starts
    captured = capsys.readouterr()
    one_line_error(captured.err)
    return captured.err


# -- worker counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_demo_with_no_or_negative_workers_is_refused_before_ray_starts(workers, tmp_path, capsys):
    err = run_main(["demo", "--workers", workers, "--output", str(tmp_path / "d"), "--no-progress"], capsys)
    assert f"--workers must be >= 1, got {workers}" in err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_optimize_with_no_or_negative_workers_is_refused(workers, tmp_path, capsys):
    sweep = tmp_path / "s.toml"
    sweep.write_text(TINY.format(search='algorithm = "grid"', extra=""))
    err = run_main(["optimize", str(sweep), "--workers", workers, "--output", str(tmp_path / "out")], capsys)
    assert f"--workers must be >= 1, got {workers}" in err
    assert not (tmp_path / "out").exists()


def test_demo_workers_0_in_a_real_process_is_one_line_and_status_2(tmp_path):
    run = cli("demo", "--workers", "0", "--output", str(tmp_path / "d"), cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr == "rustybt-ray: error: --workers must be >= 1, got 0\n"


# -- output paths -----------------------------------------------------------------------------------


def test_demo_output_below_a_regular_file(tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    err = run_main(["demo", "--workers", "1", "--output", str(tmp_path / "plain" / "d"), "--no-progress"], capsys)
    assert str(tmp_path / "plain" / "d") in err


def test_optimize_output_below_a_regular_file(tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    sweep = tmp_path / "s.toml"
    sweep.write_text(TINY.format(search='algorithm = "grid"', extra=""))
    run = cli("optimize", str(sweep), "--no-progress", "--output", str(tmp_path / "plain" / "out"), cwd=tmp_path)
    assert run.returncode == 2
    one_line_error(run.stderr, str(tmp_path / "plain" / "out"))
    assert (tmp_path / "plain").read_text() == "x"


def test_a_full_disk_names_the_file(tmp_path):
    """The journal is appended in place, so a journal that is ``/dev/full`` gets ENOSPC on its first batch."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    sweep = tmp_path / "s.toml"
    sweep.write_text(TINY.format(search='algorithm = "grid"', extra=""))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "journal.jsonl").symlink_to("/dev/full")
    run = cli("optimize", str(sweep), "--no-progress", "--no-plots", cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    one_line_error(run.stderr, "journal.jsonl", "No space left on device")


def test_os_errors_are_described_on_one_line_with_their_files():
    assert describe_os_error(OSError(28, "No space left on device", "/x/y")) == "/x/y: No space left on device"
    assert describe_os_error(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == \
        "/a -> /b: Invalid cross-device link"
    assert describe_os_error(OSError("weird")) == "weird"


# -- damaged output directories ------------------------------------------------------------------------


SWEEP = {"strategy": "rustybt_ray.examples.sma_crossover:SmaCrossover", "bundle": "demo", "start": "2017-01-01",
         "end": "2018-06-30", "objective": ["sharpe"], "directions": None, "parameters": {"fast": {}, "slow": {}},
         "status": "running"}


def out_dir(tmp_path: Path, sweep: object = SWEEP, summary: object | None = None) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    (d / "sweep.json").write_text(sweep if isinstance(sweep, str) else json.dumps(sweep))
    if summary is not None:
        (d / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return d


@pytest.mark.parametrize(
    "sweep, needle",
    [
        ('{"strategy": "x", "bund', "sweep.json is damaged"),  # torn by a full disk
        ("", "sweep.json is damaged"),
        ("[1, 2]", "a JSON object was expected"),
        ({"strategy": "x"}, "sweep.json is incomplete: it lacks bundle, objective"),
        ({**SWEEP, "objective": []}, "objective must be a list of metric names"),
        ({**SWEEP, "objective": "sharpe"}, "objective must be a list of metric names"),
        (b"\xff\xfe\x00garbage", "sweep.json is damaged"),
    ],
)
def test_results_with_a_damaged_or_incomplete_sweep_json(sweep, needle, tmp_path, capsys):
    d = tmp_path / "out"
    d.mkdir()
    if isinstance(sweep, bytes):
        (d / "sweep.json").write_bytes(sweep)
    else:
        (d / "sweep.json").write_text(sweep if isinstance(sweep, str) else json.dumps(sweep))
    err = run_main(["results", str(d)], capsys)
    assert needle in err and str(d / "sweep.json") in err


@pytest.mark.parametrize(
    "summary, needle",
    [
        ('{"kind": "search", "best"', "summary.json is damaged"),
        ({"kind": "walk_forward"}, "summary.json is incomplete or damaged (KeyError: 'windows')"),
        ({"kind": "search", "best": {"number": 1}}, "summary.json is incomplete or damaged (KeyError: 'params')"),
        ({"kind": "search", "overfitting": {"dsr": "high"}}, "summary.json is incomplete or damaged"),
    ],
)
def test_results_with_a_damaged_or_incomplete_summary_json(summary, needle, tmp_path, capsys):
    d = out_dir(tmp_path, summary=summary)
    err = run_main(["results", str(d)], capsys)
    assert needle in err
    assert capsys.readouterr().out == ""  # nothing half printed before the error


def test_results_with_a_damaged_results_parquet(tmp_path, capsys):
    d = out_dir(tmp_path, summary={"kind": "search"})
    (d / "results.parquet").write_bytes(b"PAR1 torn")
    assert f"{d / 'results.parquet'} is damaged" in run_main(["results", str(d)], capsys)
    pl.DataFrame({"fast": [5]}).write_parquet(d / "results.parquet")  # Parquet, but no sweep's
    assert "not an OptimizationResult file" in run_main(["results", str(d)], capsys)


def test_results_of_a_missing_directory_or_a_file(tmp_path, capsys):
    assert "does not exist" in run_main(["results", str(tmp_path / "nope")], capsys)
    (tmp_path / "f").write_text("x")
    assert "is not a directory" in run_main(["results", str(tmp_path / "f")], capsys)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "sweep.json").mkdir()  # a directory where the file should be
    assert "no sweep.json" in run_main(["results", str(tmp_path / "d")], capsys)
    assert "--top must be >= 1" in run_main(["results", str(tmp_path / "d"), "--top", "0"], capsys)


def test_results_of_a_running_sweep_whose_first_hundred_trials_failed(tmp_path, capsys):
    """The metric columns appear only after row 100: the table must still have them."""
    from rustybt_ray.optimize.journal import TrialJournal

    d = out_dir(tmp_path)
    j = TrialJournal(d / "journal.jsonl")
    j.append([{"key": f"f{i}", "params": {"fast": 5, "slow": 30 + i}, "metrics": None, "status": "failed"}
              for i in range(120)]
             + [{"key": "ok", "params": {"fast": 6, "slow": 30}, "metrics": {"sharpe": 1.2345}, "status": "complete"}])
    j.close()
    assert main(["results", str(d), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "121 trials so far" in out and "1.2345" in out


# -- file modes -----------------------------------------------------------------------------------------


PLOTS = importlib.util.find_spec("matplotlib") is not None  # the plots extra


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "umask, search, extra, expected_files",
    [
        (0o022, 'algorithm = "tpe"\nn_trials = 4\nseed = 0', "",
         {"sweep.json", "journal.jsonl", "results.parquet", "summary.json", "study.db",
          *PLOTS * ["plots/heatmap.png", "plots/equity.png"]}),
        (0o027, 'algorithm = "grid"', WALK_FORWARD,
         {"sweep.json", "journal.jsonl", "summary.json", "walk_forward/windows.parquet",
          *PLOTS * ["plots/walk_forward.png"]}),
    ],
)
def test_every_file_a_sweep_writes_gets_the_umask_mode(umask, search, extra, expected_files, tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(TINY.format(search=search, extra=extra))
    run = cli("optimize", str(sweep), "--no-progress", cwd=tmp_path, umask=umask)
    assert run.returncode == 0, run.stderr[-3000:]
    found = modes(tmp_path / "out")
    assert expected_files <= set(found), found
    want = 0o666 & ~umask
    assert {name: oct(m) for name, m in found.items() if m != want} == {}, f"want {oct(want)}"
