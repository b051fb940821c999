"""The notebooks in ``notebooks/`` run top to bottom in a real Jupyter kernel (nbclient).

- ``bayesian_sweep.ipynb`` runs as a laptop user runs it: its plain ``ray.init()`` starts a
  local Ray. The kernel gets ``RAY_ADDRESS=local``, so it never joins another cluster on this
  machine, and ``RAY_TMPDIR`` points at a private directory, so its Ray sessions stay out
  of ``/tmp/ray``.
- ``cluster_sweep.ipynb`` joins a running cluster: a real head node that this test starts
  with ``ray start --head --block`` in its own session, with a private ``--temp-dir``.

**Token authentication is on for both.** The head starts with ``RAY_AUTH_MODE=token`` and
a fresh token in ``RAY_AUTH_TOKEN``. The test checks that the head's GCS rejects a request
without the token. A client sends the token only when its own ``RAY_AUTH_MODE`` is
``token``, so the kernel gets both variables. The local notebook's kernel gets
``RAY_AUTH_MODE=token`` too, which is Ray's default for a Ray that ``ray.init()`` starts, and a
fresh ``RAY_AUTH_TOKEN``, so Ray does not generate ``~/.ray/auth_token``. Neither test reads or
writes ``~/.ray/auth_token``.

**Stopping the head.** The test never runs ``ray stop``, which would stop every Ray on the
machine. The ``ray start`` process is the leader of its own process group. It gets SIGTERM
first: that is Ray's graceful path, and it drains the node and stops the processes it
started in about 2 s. A SIGTERM to the whole group at once kills the GCS while the leader
still drains through it, and the leader then waits up to its 30 s drain timeout. Whatever is
still alive after that gets SIGTERM, then SIGKILL, for the group. Processes are also
tracked one by one (the head's descendants, recorded after every cell), because Ray's
worker processes run in process groups of their own. The test then checks that none of
them survives. Ray writes the cluster's address to ``<temp-dir>/ray_current_cluster``, so
with ``--temp-dir`` the default ``/tmp/ray/ray_current_cluster`` (which a later plain
``ray.init()`` reads) is never written. The test checks that, and removes its own temp dir.

The committed notebooks must carry no outputs and no execution counts (checked on the
files themselves).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")
pytest.importorskip("ipykernel", reason="the notebook extra is not installed")
pytest.importorskip("ipywidgets", reason="the notebook extra is not installed")
pytest.importorskip("plotly", reason="the notebook extra is not installed")
pytest.importorskip("matplotlib", reason="the notebook extra is not installed")
psutil = pytest.importorskip("psutil")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (after the skips)
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
BAYESIAN = NOTEBOOKS / "bayesian_sweep.ipynb"
CLUSTER = NOTEBOOKS / "cluster_sweep.ipynb"
CELL_TIMEOUT_S = 240
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
# Variables of the caller's shell that would change what the notebooks connect to.
_SCRUBBED = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR",
             "RUSTYBT_RAY_ADDRESS")


# -- helpers --------------------------------------------------------------------------------


def _short_tmpdir(prefix: str) -> Path:
    """A fresh directory with a short path. Ray's Unix sockets live under it, and their paths
    must stay within 107 bytes, which pytest's ``tmp_path`` can exceed."""
    base = "/tmp" if os.path.isdir("/tmp") else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(extra)
    return env


def _kernel_manager() -> AsyncKernelManager:
    """The ``python3`` kernel of the ipykernel installed here, run by this very interpreter.

    With no kernel directories, jupyter_client falls back to ipykernel's built-in spec, whose
    command is ``sys.executable -m ipykernel_launcher``. So a ``python3`` kernelspec in the
    user's or the system's Jupyter paths (which may name another Python) cannot get in the way,
    and nothing needs ``python -m ipykernel install``.
    """
    ksm = KernelSpecManager(kernel_dirs=[])
    spec = ksm.get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable, spec.argv
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm)


class _Descendants:
    """Processes seen below some root processes, recorded while they live (psutil keeps pid + start time)."""

    def __init__(self) -> None:
        self.roots: list[psutil.Process] = []
        self.seen: dict[tuple[int, float], psutil.Process] = {}

    def add_root(self, pid: int) -> None:
        proc = psutil.Process(pid)
        self.roots.append(proc)
        self.record()

    def record(self) -> None:
        for root in self.roots:
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                try:
                    self.seen.setdefault((p.pid, p.create_time()), p)
                except psutil.NoSuchProcess:
                    pass

    def alive(self) -> list[psutil.Process]:
        out = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    def wait_gone(self, timeout_s: float) -> list[psutil.Process]:
        """The recorded processes still alive after up to ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = self.alive()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def kill_left(self) -> None:
        for p in self.alive():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def _describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {p.name()} {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            out.append(str(p.pid))
    return out


def _run_notebook(path: Path, cwd: Path, env: dict[str, str], tracked: _Descendants,
                  also: _Descendants | None = None) -> nbformat.NotebookNode:
    """Execute ``path`` in a fresh kernel with ``env``.

    After every cell, the processes below the kernel are recorded in ``tracked``, and those
    below ``also``'s roots are recorded in ``also``.
    """
    nb = nbformat.read(path, as_version=4)
    km = _kernel_manager()

    def on_cell_executed(**_: object) -> None:
        if not tracked.roots and km.provisioner is not None and getattr(km.provisioner, "pid", None):
            tracked.add_root(km.provisioner.pid)
        tracked.record()
        if also is not None:
            also.record()

    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, startup_timeout=120,
                                     resources={"metadata": {"path": str(cwd)}},
                                     on_cell_executed=on_cell_executed)
    # cleanup_kc: shut the kernel down at the end, error or not (a client given km= would not).
    client.execute(env=env, cleanup_kc=True)
    return nb


def _code_cell(nb: nbformat.NotebookNode, needle: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, f"expected one code cell containing {needle!r}, found {len(cells)}"
    return cells[0]


def _mimetypes(cell: nbformat.NotebookNode) -> set[str]:
    return {m for o in cell.outputs for m in o.get("data", {})}


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream" and o.name == "stdout":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _assert_no_errors(nb: nbformat.NotebookNode) -> None:
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]


def _ray_address_file() -> Path:
    """Where a plain ``ray.init()`` in this environment looks for a running cluster's address."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # another Ray layout: its default place in Ray 2.60
        return Path(os.environ.get("RAY_TMPDIR") or "/tmp") / "ray" / "ray_current_cluster"
    return Path(get_ray_address_file(None))


# -- the committed files --------------------------------------------------------------------


@pytest.mark.parametrize("path", [BAYESIAN, CLUSTER], ids=lambda p: p.name)
def test_committed_notebook_is_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert "widgets" not in nb.metadata, "saved widget state: clear it before committing"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and any(c.cell_type == "markdown" for c in nb.cells)
    for cell in code:
        assert cell.outputs == [], f"cell {cell.get('id')} has outputs: clear them before committing"
        assert cell.execution_count is None, f"cell {cell.get('id')} has an execution count"


def test_cluster_notebook_reads_its_address_first() -> None:
    nb = nbformat.read(CLUSTER, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code").source
    assert 'address = os.environ.get("RUSTYBT_RAY_ADDRESS", "auto")' in first
    assert "ray.init(address=address)" in first


# -- the laptop notebook --------------------------------------------------------------------


def test_bayesian_sweep_notebook_runs(tmp_path: Path) -> None:
    ray_tmp = _short_tmpdir("rbt-nbk-")
    tracked = _Descendants()
    env = _env(RAY_ADDRESS="local", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               RAY_TMPDIR=str(ray_tmp))
    try:
        nb = _run_notebook(BAYESIAN, tmp_path, env, tracked)
        # The kernel is gone; so must be the Ray it started (the notebook calls ray.shutdown()).
        left = tracked.wait_gone(20)
        assert not left, f"processes of the notebook's Ray survived: {_describe(left)}"
    finally:
        tracked.kill_left()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    _assert_no_errors(nb)

    tpe = _code_cell(nb, "OptunaSearch(space, n_trials=60")
    assert WIDGET in _mimetypes(tpe), "the sweep showed no notebook progress bar"
    m = re.search(r"(\d+) trials: (\d+) complete, (\d+) pruned early", _text(tpe))
    assert m and int(m[1]) == 60 and int(m[2]) >= 1, _text(tpe)
    assert "sharpe" in _text(tpe)  # the top-5 table
    study = _code_cell(nb, "rustybt_ray_not_run")
    m = re.search(r"(\d+) trials in the study, (\d+) of them proposals that never ran; (\d+) backtests",
                  _text(study))
    assert m and int(m[1]) == int(m[2]) + int(m[3]) and int(m[3]) == 60, _text(study)
    for needle in ("plot_optimization_history", "plot_param_importances", "plot_contour",
                   "plot_intermediate_values"):
        assert PLOTLY in _mimetypes(_code_cell(nb, needle)), f"{needle}: no plotly figure"
    for needle in ("grid_heatmap(grid", "equity_curve(", "walk_forward_curve("):
        assert "image/png" in _mimetypes(_code_cell(nb, needle)), f"{needle}: no PNG"

    over = _text(_code_cell(nb, "grid.overfitting()"))
    stats = {k: float(v) for k, v in re.findall(r"'(dsr|pbo|n_trials)': ([-+0-9.eE]+|nan)", over)}
    assert set(stats) == {"dsr", "pbo", "n_trials"}, over
    assert 0.0 <= stats["dsr"] <= 1.0 and 0.0 <= stats["pbo"] <= 1.0, stats
    assert stats["n_trials"] == 90  # the whole grid: fast 5..50 x slow 20..200, fast < slow

    wf = _text(_code_cell(nb, "WalkForwardOptimizer("))
    assert re.search(r"Walk-forward: \d+ windows", wf) and "out of sample" in wf, wf
    assert "pool.close()" in _code_cell(nb, "ray.shutdown()").source


# -- the cluster notebook -------------------------------------------------------------------


class _Head:
    """A Ray head node started with ``ray start --head --block`` in its own session."""

    def __init__(self, log_path: Path) -> None:
        self.temp_dir = _short_tmpdir("rbt-nbh-")
        self.port, client_port, agent_port = _free_ports(3)
        self.address = f"127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.marker = uuid.uuid4().hex
        self.tracked = _Descendants()
        self.stopped = False
        ray_cli = Path(sys.executable).with_name("ray")
        cmd = [str(ray_cli) if ray_cli.exists() else "ray", "start", "--head", "--block",
               f"--port={self.port}", "--num-cpus=2", "--include-dashboard=false",
               f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent_port}",
               f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]
        env = _env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RUSTYBT_NOTEBOOK_TEST=self.marker)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.tracked.add_root(self.proc.pid)

    @property
    def address_file(self) -> Path:
        return self.temp_dir / "ray_current_cluster"

    def log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout_s: float = 90) -> None:
        """Until ``ray start`` wrote the address file, which it does once the node runs."""
        deadline = time.monotonic() + timeout_s
        while not self.address_file.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"ray start exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the head did not start in {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.tracked.record()

    def stop(self) -> list[psutil.Process]:
        """Stop the head (see the module doc); the recorded processes still alive after it."""
        if self.stopped:
            return []
        self.stopped = True
        self.tracked.record()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the leader alone: Ray's graceful shutdown
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)  # the group's leftovers, if any
            except ProcessLookupError:
                break
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        left = self.tracked.wait_gone(15)
        # Anything else that carries this head's marker or names its temp dir.
        for p in psutil.process_iter():
            try:
                if p.pid == os.getpid():
                    continue
                if p.environ().get("RUSTYBT_NOTEBOOK_TEST") == self.marker or \
                        any(str(self.temp_dir) in a for a in p.cmdline()):
                    if p.status() != psutil.STATUS_ZOMBIE and p not in left:
                        left.append(p)
            except (psutil.Error, OSError):
                continue
        return left

    def cleanup(self) -> None:
        """Kill whatever survived :meth:`stop`, close the log, remove the temp dir."""
        self.stop()
        self.tracked.kill_left()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[_Head]:
    head = _Head(tmp_path / "ray-head.log")
    try:
        head.wait_ready()
        yield head
    finally:
        head.cleanup()


def _assert_token_auth(head: _Head) -> None:
    """The head's GCS rejects a request without the token and answers one with it."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(head.address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        request = gcs_service_pb2.GetAllNodeInfoRequest()
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.GetAllNodeInfo(request, timeout=20)
        assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.GetAllNodeInfo(request, timeout=20, metadata=(("authorization", f"Bearer {head.token}"),))
        assert len(reply.node_info_list) == 1


def test_cluster_sweep_notebook_runs_on_a_running_head(ray_head: _Head, tmp_path: Path) -> None:
    default_file = _ray_address_file()
    # --temp-dir moved the address file into the head's own directory.
    assert ray_head.address_file.read_text().strip().endswith(f":{ray_head.port}")
    _assert_token_auth(ray_head)

    kernel_tracked = _Descendants()
    env = _env(RUSTYBT_RAY_ADDRESS=ray_head.address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=ray_head.token,
               RAY_TMPDIR=str(ray_head.temp_dir))
    try:
        nb = _run_notebook(CLUSTER, tmp_path, env, kernel_tracked, also=ray_head.tracked)
        left = kernel_tracked.wait_gone(20)
        assert not left, f"processes of the notebook's kernel survived: {_describe(left)}"
    finally:
        kernel_tracked.kill_left()
    _assert_no_errors(nb)

    connect = _code_cell(nb, "RUSTYBT_RAY_ADDRESS")
    assert re.search(r"connected: 1 node\(s\), 2 CPUs", _text(connect)), _text(connect)
    assert "2 workers" in _text(_code_cell(nb, "WorkerPool()"))  # one per CPU of the head
    tpe = _code_cell(nb, "OptunaSearch(space, n_trials=30")
    assert WIDGET in _mimetypes(tpe)
    m = re.search(r"(\d+) trials: (\d+) complete", _text(tpe))
    assert m and int(m[1]) == 30 and int(m[2]) >= 1, _text(tpe)
    assert PLOTLY in _mimetypes(_code_cell(nb, "plot_optimization_history"))
    assert "image/png" in _mimetypes(_code_cell(nb, "equity_curve("))

    left = ray_head.stop()
    assert not left, f"processes of the head survived: {_describe(left)}"
    assert ray_head.proc.returncode is not None
    # A later plain ray.init() must not be pointed at this (now dead) head.
    if default_file.exists():
        assert not default_file.read_text().strip().endswith(f":{ray_head.port}"), default_file
