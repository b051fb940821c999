"""Ray Jobs for real: a sweep submitted to a token-authenticated head node that ``ray start`` runs.

What docs/cluster.md promises for ``ray job submit ... -- rustybt-ray optimize``: the
job's driver joins the cluster it was submitted to, runs its trials on that cluster's
actors and writes its output directory; the cluster refuses requests without its token;
and clients send the token only in token mode.

The head node is this test's own: free ports for everything it listens on (other Rays
run on this machine), its own session in a short temp dir under /tmp (a path under
pytest's tmp_path is too long for Ray's Unix sockets: 107 bytes), stopped by its process
group. Never ``ray stop``, which would stop every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil  # a dependency of ray[default]
import pytest

SWEEP = """
strategy = "rustybt_ray.examples.sma_crossover:SmaCrossover"
bundle = "demo"
start = 2017-01-01
end = 2018-12-31
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
N_TRIALS = 6  # fast in (5, 10, 15) x slow in (30, 60)

# Everything `ray start` listens on, each given a free port; worker ports are picked by the OS (0).
PORT_FLAGS = ["--port", "--dashboard-port", "--node-manager-port", "--object-manager-port",
              "--ray-client-server-port", "--metrics-export-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--runtime-env-agent-port"]
READY_TIMEOUT_S = 60
JOB_TIMEOUT_S = 120
STOP_TIMEOUT_S = 15


def _ray_cli() -> str | None:
    here = Path(sys.executable).with_name("ray")  # the venv's own, next to this Python
    return str(here) if here.is_file() else shutil.which("ray")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on every interface right now (all held open until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _default_address_file() -> Path:
    """Where a plain ``ray start`` records its cluster for a later plain ``ray.init()``."""
    try:
        from ray._common.utils import get_ray_address_file

        return Path(get_ray_address_file(None))
    except ImportError:  # another Ray layout
        return Path(os.environ.get("TMPDIR") or "/tmp") / "ray" / "ray_current_cluster"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass
class Head:
    proc: subprocess.Popen
    url: str             # the dashboard: job API
    gcs_port: int
    token: str
    temp_dir: Path       # --temp-dir: sessions, logs, sockets, its ray_current_cluster
    log: Path            # the `ray start` process's own output

    def log_tail(self, n: int = 4000) -> str:
        return (_read(self.log) or "")[-n:]


def _ours(head: Head, markers: list[str]) -> list[psutil.Process]:
    """Live processes this test started: the head's session (gcs_server, raylet, dashboard,
    agents, workers), plus anything outside it that carries this cluster's token in its
    environment or a path of this test in its command line (job drivers get a session of
    their own). Zombies are dead already and are not counted."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(p.pid) == head.proc.pid:
                found.append(p)
            elif p.environ().get("RAY_AUTH_TOKEN") == head.token:
                found.append(p)
            elif any(m in " ".join(p.cmdline()) for m in markers):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {p.name()} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            out.append(f"{p.pid} (gone)")
    return out


def _wait_gone(head: Head, markers: list[str], timeout: float) -> list[psutil.Process]:
    """Wait until ``ray start`` has exited (and is reaped) and no process of this test is alive."""
    deadline = time.monotonic() + timeout
    while True:
        head.proc.poll()
        left = _ours(head, markers)
        if head.proc.returncode is not None and not left:
            return []
        if time.monotonic() > deadline:
            return left if head.proc.returncode is not None else [psutil.Process(head.proc.pid), *left]
        time.sleep(0.3)


def _stop(head: Head, markers: list[str]) -> list[str]:
    """SIGTERM the head's process group (and any job driver outside it), then SIGKILL what is left.

    Returns the processes still alive at the end (should be none)."""
    outside = [p for p in _ours(head, markers) if _sid(p) != head.proc.pid]
    try:
        os.killpg(head.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for p in outside:
        try:
            p.terminate()
        except psutil.Error:
            pass
    # A head stopped while it starts up can hang in its SIGTERM handler: give it a while, then SIGKILL.
    left = _wait_gone(head, markers, timeout=STOP_TIMEOUT_S)
    if left:
        try:
            os.killpg(head.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        left = _wait_gone(head, markers, timeout=10)
    return _describe(left)


def _sid(p: psutil.Process) -> int | None:
    try:
        return os.getsid(p.pid)
    except OSError:
        return None


def _start(ray: str, temp_dir: Path, token: str) -> tuple[Head, str | None]:
    """One attempt to start the head; returns it and None once its job API answers, else the reason."""
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_JOB_HEADERS", "RAY_AUTH_TOKEN_PATH")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,  # takes precedence over RAY_AUTH_TOKEN_PATH and ~/.ray/auth_token
        RAY_USAGE_STATS_ENABLED="0",
        # On SIGTERM, `ray start` first asks the GCS to drain the node, for up to 30 s; the
        # GCS got the same SIGTERM, so that wait would run out. Shut down at once instead.
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        # The job's entrypoint is a shell command run with the head's environment: the
        # venv's bin first, so `rustybt-ray` is this checkout's command.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    cmd = [ray, "start", "--head", "--block", "--num-cpus=2", "--dashboard-host=127.0.0.1",
           *(f"{flag}={port}" for flag, port in ports.items()),
           "--min-worker-port=0", "--max-worker-port=0",  # OS-picked, as ray.init() does
           f"--temp-dir={temp_dir}", "--object-store-memory=200000000", "--disable-usage-stats"]
    log = temp_dir / "ray-start.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    head = Head(proc, f"http://127.0.0.1:{ports['--dashboard-port']}", ports["--port"], token, temp_dir, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return head, f"`ray start` exited with {proc.returncode}"
        try:
            # The job API answers, and `ray start` has got as far as recording its address.
            status, _ = _http(head.url + "/api/jobs/", token, timeout=5)
            if status == 200 and (temp_dir / "ray_current_cluster").exists():
                return head, None
        except OSError:
            pass
        time.sleep(0.5)
    return head, f"the job API did not answer within {READY_TIMEOUT_S} s"


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[Head]:
    ray = _ray_cli()
    if ray is None:
        pytest.skip("the `ray` command is not installed")
    address_file = _default_address_file()
    address_before = _read(address_file)
    home_token_file = Path.home() / ".ray" / "auth_token"
    home_token_before = _read(home_token_file)
    token = secrets.token_hex(32)
    heads: list[Head] = []
    problems: list[str] = []
    try:
        failures: list[str] = []
        for _attempt in range(2):
            temp_dir = Path(tempfile.mkdtemp(prefix="rbtjob-", dir="/tmp" if os.path.isdir("/tmp") else None))
            head, failure = _start(ray, temp_dir, token)
            heads.append(head)
            if failure is None:
                break
            exited = head.proc.poll() is not None
            failures.append(f"{failure}; its log:\n{head.log_tail()}")
            _stop(head, [str(temp_dir)])
            if not exited:  # slow, not refused: a second try would not be faster
                break
            # It exited: most likely a port taken between our check and its bind. Again, new ports.
        else:
            head = None
        if head is None or head.proc.poll() is not None:
            pytest.fail("could not start a Ray head node:\n" + "\n".join(failures))
        yield head
    finally:
        for head in heads:
            if head.proc.poll() is None or _ours(head, [str(head.temp_dir), str(tmp_path)]):
                left = _stop(head, [str(head.temp_dir), str(tmp_path)])
                if left:
                    problems.append(f"processes still running after SIGKILL: {left}")
            # `ray start` records its GCS address for a later plain `ray.init()` in
            # <temp dir>/ray_current_cluster. With --temp-dir that is this head's own dir, not
            # /tmp/ray; should the default file ever hold this (now dead) cluster, put back
            # what was there, so other tests' ray.init() do not try to join it.
            ours = _read(head.temp_dir / "ray_current_cluster")
            now = _read(address_file)
            if ours and now is not None and now.strip() == ours.strip() and now != address_before:
                problems.append(f"{address_file} held this test's cluster ({ours.strip()}); restored")
                if address_before is None:
                    address_file.unlink(missing_ok=True)
                else:
                    address_file.write_text(address_before)
            shutil.rmtree(head.temp_dir, ignore_errors=True)
        # The head took its token from RAY_AUTH_TOKEN: it must not have written ~/.ray/auth_token.
        if (_read(home_token_file) or "").strip() == token and home_token_before != _read(home_token_file):
            problems.append(f"{home_token_file} was written with this test's token; restored")
            if home_token_before is None:
                home_token_file.unlink(missing_ok=True)
            else:
                home_token_file.write_text(home_token_before)
    assert not problems, "\n".join(problems)


def _job_logs(client, job_id: str) -> str:
    try:
        return client.get_job_logs(job_id)
    except Exception as exc:  # noqa: BLE001 - only for the failure message
        return f"(no job logs: {exc})"


def _submit(client, entrypoint: str) -> str:
    """Submit, retrying while the head's job agent is not up yet; a fixed id keeps a retry from
    submitting twice."""
    submission_id = f"rustybt-sweep-{secrets.token_hex(4)}"
    deadline = time.monotonic() + 60
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, submission_id=submission_id)
        except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError for any HTTP error
            if "already exists" in str(exc):
                return submission_id
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _client_probe(url: str, env_extra: dict[str, str], home: Path) -> subprocess.Popen:
    """A fresh process with a job client and only the auth settings in ``env_extra`` (and an empty HOME)."""
    code = ("import sys\nfrom ray.job_submission import JobSubmissionClient\n"
            "try:\n    JobSubmissionClient(sys.argv[1]).list_jobs()\n    print('ACCEPTED')\n"
            "except Exception as exc:\n    print('REFUSED', type(exc).__name__, str(exc)[:300].replace(chr(10), ' '))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_JOB_HEADERS", "RAY_ADDRESS"))}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", **env_extra)
    return subprocess.Popen([sys.executable, "-c", code, url], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_a_sweep_submitted_as_a_ray_job_runs_on_the_token_authenticated_cluster(ray_head: Head, tmp_path: Path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from rustybt_ray.data import load_bundle
    from rustybt_ray.engine import run_metrics
    from rustybt_ray.examples.sma_crossover import SmaCrossover
    from rustybt_ray.optimize import OptimizationResult

    head = ray_head
    # `ray start` recorded this cluster in its own temp dir, not in the default /tmp/ray file
    # that a plain ray.init() reads.
    gcs_address = (_read(head.temp_dir / "ray_current_cluster") or "").strip()
    assert gcs_address.endswith(f":{head.gcs_port}"), gcs_address
    assert (_read(_default_address_file()) or "").strip() != gcs_address

    # Token auth is on: no token is 401, a wrong one 403, the right one 200.
    assert _http(head.url + "/api/jobs/")[0] == 401
    assert _http(head.url + "/api/jobs/", token="0" * 64)[0] == 403
    assert _http(head.url + "/api/jobs/", token=head.token)[0] == 200
    with pytest.raises(Exception, match="(?i)401|403|unauthorized|forbidden|authentication"):
        JobSubmissionClient(head.url).list_jobs()  # no headers: refused whatever this process's auth mode

    # The rule docs/cluster.md states: a client sends its token only when its own RAY_AUTH_MODE is token.
    home = tmp_path / "home"  # empty: no ~/.ray/auth_token to fall back on
    home.mkdir()
    token_file = tmp_path / "token"
    token_file.write_text(head.token + "\n")
    probes = {
        "token in RAY_AUTH_TOKEN, mode unset": ({"RAY_AUTH_TOKEN": head.token}, "REFUSED"),
        "token in RAY_AUTH_TOKEN, mode token": ({"RAY_AUTH_TOKEN": head.token, "RAY_AUTH_MODE": "token"}, "ACCEPTED"),
        "token in RAY_AUTH_TOKEN_PATH, mode token": ({"RAY_AUTH_TOKEN_PATH": str(token_file),
                                                     "RAY_AUTH_MODE": "token"}, "ACCEPTED"),
    }
    running = {name: _client_probe(head.url, env, home) for name, (env, _) in probes.items()}
    try:
        sweep = tmp_path / "sweep.toml"
        sweep.write_text(SWEEP)
        out = (tmp_path / "out").resolve()
        client = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.token}"})
        entrypoint = (f"rustybt-ray optimize {shlex.quote(str(sweep))} --output {shlex.quote(str(out))} "
                      "--workers 2 --no-progress")
        job_id = _submit(client, entrypoint)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not (status := client.get_job_status(job_id)).is_terminal():
            if time.monotonic() > deadline:
                client.stop_job(job_id)
                pytest.fail(f"job {job_id} still {status} after {JOB_TIMEOUT_S} s; logs:\n"
                            f"{_job_logs(client, job_id)}\nhead:\n{head.log_tail()}")
            time.sleep(1)
        logs = _job_logs(client, job_id)
        assert status == JobStatus.SUCCEEDED, f"job {job_id} {status}: {client.get_job_info(job_id).message}\n{logs}"

        for name, (_, expected) in probes.items():
            said = running[name].communicate(timeout=120)[0]
            assert said.splitlines() and said.splitlines()[-1].startswith(expected), f"{name}: {said[-2000:]}"
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    # The driver joined this cluster (Ray set RAY_ADDRESS for it) rather than starting a Ray of
    # its own: its trial actors are this cluster's, under the driver's job id.
    assert "Started a local Ray instance" not in logs, logs
    info = client.get_job_info(job_id)
    status_code, body = _http(head.url + "/api/v0/actors?limit=1000&detail=1", head.token)
    assert status_code == 200, body[:500]
    actors = json.loads(body)["data"]["result"]["result"]
    workers = [a for a in actors if a["class_name"] == "BacktestWorker" and a["job_id"] == info.driver_info.id]
    assert len(workers) == 2, [(a["class_name"], a["job_id"]) for a in actors]

    # What the job wrote, checked against a backtest in this process.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["n_complete"] == N_TRIALS
    result = OptimizationResult.read_parquet(out / "results.parquet")
    assert len(result) == N_TRIALS and result.n_complete == N_TRIALS
    assert result.trials["status"].to_list() == ["complete"] * N_TRIALS
    best = result.best
    assert best is not None and summary["best"]["number"] == best["number"]
    metrics, _ = run_metrics(SmaCrossover, load_bundle("demo"), "2017-01-01", "2018-12-31", 100_000.0,
                             best["params"])
    assert best["metrics"]["sharpe"] == metrics["sharpe"]
    assert f"best: trial #{best['number']}" in logs
