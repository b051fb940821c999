"""A sweep whose driver a test kills mid-run, then resumes from the journal.

Imported under the same module name by the test and by the killed driver
(``python -c "import resume_scenario; resume_scenario.main(...)"``), so the strategy
has the same fingerprint in both and the journal's keys match.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import DiscreteParameter, OptimizationConfig, ParallelOptimizer, ParameterSpace

START, END = "2016-01-01", "2017-12-31"


class SlowSma(SmaCrossover):
    """SmaCrossover that takes a while per trial, so a driver can be killed mid-sweep."""

    def initialize(self) -> None:
        time.sleep(0.15)


def space() -> ParameterSpace:
    """24 grid points."""
    return ParameterSpace([DiscreteParameter("fast", 5, 20, 5), DiscreteParameter("slow", 30, 80, 10)])


def config() -> OptimizationConfig:
    """One trial per batch, so results reach the journal one by one."""
    return OptimizationConfig(min_batch_seconds=0.001, max_batch_size=1, batches_in_flight=1)


def store_config() -> OptimizationConfig:
    """As :func:`config`, and the store commits a shard every 50 ms, so a kill finds several."""
    return OptimizationConfig(min_batch_seconds=0.001, max_batch_size=1, batches_in_flight=1, store_commit_s=0.05)


def run(journal: str, n_jobs: int = 2, store: bool = False):
    """The sweep, journaled (``store``: into the results store at that path instead)."""
    opt = ParallelOptimizer(space(), n_jobs=n_jobs, config=store_config() if store else config(), progress=False)
    where = {"store": journal} if store else {"journal": journal}
    return opt.run(SlowSma, "demo", START, END, objective="sharpe", **where)


def main(journal: str, store: bool = False) -> None:
    """The driver the test kills: its own local Ray, then the sweep."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print("started", flush=True)
    run(journal, store=store)
    print("finished", flush=True)
    ray.shutdown()


def kill_driver_when(code: str, ready: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Run ``code`` as a driver in a new interpreter and SIGKILL it (and its Ray) once ``ready()``.

    Its own session: the driver and the Ray it starts are one process group, killed as one.
    """
    here = str(Path(__file__).parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the driver ended early: {proc.stdout.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the sweep was not ready to kill within {timeout_s:.0f} s")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1])
