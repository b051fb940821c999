"""A worker that stops answering (a frozen process, a stuck node) is replaced while the sweep runs."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from ray import cloudpickle

from rustybt_ray import load_bundle
from rustybt_ray.engine import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import (
    DiscreteParameter,
    GridSearchAlgorithm,
    OptimizationConfig,
    ParallelOptimizer,
    ParameterSpace,
    WorkerPool,
)

START, END = "2016-01-01", "2017-12-31"


class SlowMarkedSma(SmaCrossover):
    """Leaves a marker file per trial (pid in its name) and takes a moment, so a worker can be frozen mid-sweep."""

    marker_dir = ""

    def initialize(self) -> None:
        open(os.path.join(self.marker_dir, f"{os.getpid()}-{self.fast}-{self.slow}"), "w").close()
        time.sleep(0.3)


cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_a_frozen_worker_is_replaced_and_its_trials_rerun(ray_session, tmp_path):
    space = ParameterSpace([DiscreteParameter("fast", 5, 20, 5), DiscreteParameter("slow", 30, 100, 10)])
    config = OptimizationConfig(max_batch_size=1, batches_in_flight=1, health_check_interval_s=1.0)
    SlowMarkedSma.marker_dir = str(tmp_path)
    victim = None
    try:
        with WorkerPool(2, config, ping_timeout_s=2.0) as pool:
            opt = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, progress=False, config=config)
            first = {i["worker"]: i["pid"] for i in pool.info()}
            victim = next(iter(first.values()))
            box: dict = {}
            th = threading.Thread(target=lambda: box.setdefault("result", opt.run(SlowMarkedSma, "demo", START, END)))
            th.start()
            deadline = time.monotonic() + 60
            while len([p for p in os.listdir(tmp_path) if p.startswith(f"{victim}-")]) < 2:
                assert time.monotonic() < deadline, "the victim never started a trial"
                time.sleep(0.01)
            os.kill(victim, signal.SIGSTOP)  # alive, but answers nothing: not a death Ray reports
            th.join(timeout=120)
            assert not th.is_alive(), "the sweep waited on the frozen worker"
            result = box["result"]
    finally:
        if victim is not None:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert opt.last_stats.workers_replaced >= 1
    assert len(result) == 32 and result.n_complete == 32 and result.trials["number"].n_unique() == 32
    # Replaced while the other worker still had work (health checks run every second,
    # not only when no result arrives): the new worker shared the rest of the sweep.
    by_new = result.trials.filter(~result.trials["worker"].is_in(list(first)))
    assert by_new.height >= 3, by_new.height
    assert result.trials["attempts"].max() >= 2  # the frozen worker's trial ran again elsewhere
    demo = load_bundle("demo")
    for row in result.trials.iter_rows(named=True):
        m, _ = run_metrics(SmaCrossover, demo, START, END, params={"fast": row["fast"], "slow": row["slow"]})
        assert row["final_value"] == m["final_value"]
