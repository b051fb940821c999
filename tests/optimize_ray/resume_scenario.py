"""A sweep whose driver a test kills mid-run, then resumes from the journal.

Imported under the same module name by the test and by the killed driver
(``python -c "import resume_scenario; resume_scenario.main(...)"``), so the strategy
has the same fingerprint in both and the journal's keys match.
"""

from __future__ import annotations

import sys
import time

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


def run(journal: str, n_jobs: int = 2):
    """The sweep, journaled."""
    return ParallelOptimizer(space(), n_jobs=n_jobs, config=config(), progress=False).run(
        SlowSma, "demo", START, END, objective="sharpe", journal=journal)


def main(journal: str) -> None:
    """The driver the test kills: its own local Ray, then the sweep."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print("started", flush=True)
    run(journal)
    print("finished", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
