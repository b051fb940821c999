"""One process writes a results store at a time: a second driver is refused, a dead one leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from rustybt_ray.errors import ConfigError
from rustybt_ray.optimize.store import ResultStore

JOB = {"strategy": "m.S:abc", "bundle_version": "v1", "start": "2020-01-02", "end": "2020-12-31"}


def record(i: int) -> dict:
    return {"key": f"{i:064x}", "number": i, "params": {"fast": i}, "metrics": {"sharpe": float(i)}, "status": "complete",
            "error": None, "duration_s": 0.0, "worker": 0, "attempts": 1, "returns": None}


def writer(path) -> subprocess.Popen:
    """Another driver: opens the store for writing, commits one row, says so, then waits (holding the store)."""
    code = textwrap.dedent(f"""
        import sys
        from rustybt_ray.optimize.store import ResultStore
        s = ResultStore({str(path)!r}, job={JOB!r}, param_names=["fast"])
        s.append([{record(0)!r}]); s.commit()
        print("open", flush=True)
        sys.stdin.readline()
        s.close()
        print("closed", flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    return p


def test_a_second_process_is_refused_while_the_first_writes(tmp_path):
    path = tmp_path / "s"
    p = writer(path)
    try:
        with pytest.raises(ConfigError, match="another process is writing this results store"):
            ResultStore(path, job=JOB, param_names=["fast"])
        # Reading is fine while it writes (what `rustybt-ray results DIR` does).
        assert len(ResultStore(path, readonly=True).scan().collect()) == 1
    finally:
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "closed"
        p.wait(timeout=30)
    # Once it closed, this process may write (and sees its row).
    s = ResultStore(path, job=JOB, param_names=["fast"])
    assert f"{0:064x}" in s and len(s) == 1
    s.close()


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "s"
    p = writer(path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    s = ResultStore(path, job=JOB, param_names=["fast"])  # the kernel released the flock with the process
    assert f"{0:064x}" in s
    s.append([record(1)])
    s.close()
    assert len(ResultStore(path, readonly=True).scan().collect()) == 2


def test_stores_of_one_process_share_the_lock_until_the_last_closes(tmp_path):
    path = tmp_path / "s"
    first = ResultStore(path, job=JOB, param_names=["fast"])
    second = ResultStore(path, job=JOB, param_names=["fast"])  # same process: allowed, as before the lock
    first.close()
    code = (f"from rustybt_ray.optimize.store import ResultStore\n"
            f"ResultStore({str(path)!r}, job={JOB!r}, param_names=['fast'])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode != 0 and "another process is writing" in other.stderr
    second.close()
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
    assert oct((path / ".writer.lock").stat().st_mode & 0o777) == "0o644"
