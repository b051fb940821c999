"""Workers over real Ray: zero-copy bundle views, results identical to in-process runs, failures contained."""

from __future__ import annotations

import os
import sys

import pytest
import ray
from ray import cloudpickle

from rustybt_ray.engine.run import run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover

PARAMS = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 50}, {"fast": 20, "slow": 100}]


class Fragile(SmaCrossover):
    """Raises for ``fast == 7``, as a buggy strategy would."""

    def initialize(self) -> None:
        if self.fast == 7:
            raise ValueError(f"fast={self.fast} is not supported here")


# Workers cannot import this test module (pytest put its folder on the driver's path
# only), so its strategies travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def mapping_of(pid: int, address: int) -> dict[str, object]:
    """The ``/proc/PID/maps`` line holding ``address``: flags, file (device, inode, path) and file offset.

    Two processes whose addresses map the same file at the same offset read the same
    physical pages: that is what zero-copy sharing between actors means.
    """
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return {
                    "perms": parts[1],
                    "file": (parts[3], parts[4], parts[5].strip() if len(parts) > 5 else ""),
                    "offset": address - lo + int(parts[2], 16),
                }
    raise AssertionError(f"address {address:#x} is not mapped in process {pid}")


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_workers_on_a_node_share_one_read_only_buffer(pool2, demo, make_spec):
    spec = make_spec(pool2, demo, SmaCrossover)
    pool2.prepare(spec)
    try:
        infos = {i["worker"]: i for i in pool2.info()}
        maps = []
        for wid, actor in pool2.workers.items():
            mem = ray.get(actor.bundle_memory.remote(demo.version))
            # A view over the object store's buffer: not a private copy, and not writable.
            assert mem == {**mem, "writeable": False, "owns_data": False, "nbytes": demo.values.nbytes}
            m = mapping_of(infos[wid]["pid"], mem["address"])
            # A shared ('s') mapping of Ray's plasma file, not anonymous process memory.
            assert m["perms"][3] == "s" and "plasma" in m["file"][2], m
            maps.append(m)
        assert len(maps) == 2 and len({infos[w]["pid"] for w in infos}) == 2
        assert maps[0]["file"] == maps[1]["file"] and maps[0]["offset"] == maps[1]["offset"]
        # One node, one copy in its object store.
        loc = ray.experimental.get_object_locations(spec.bundle_ref)[spec.bundle_ref[0]]
        assert loc["node_ids"] == [ray.get_runtime_context().get_node_id()]
    finally:
        pool2.release(spec.job_id)


def test_run_batch_matches_in_process_metrics(pool2, demo, make_spec):
    spec = make_spec(pool2, demo, SmaCrossover)
    pool2.prepare(spec)
    try:
        wid, actor = next(iter(pool2.workers.items()))
        outcomes = ray.get(actor.run_batch.remote(spec.job_id, list(enumerate(PARAMS))))
        assert [o.number for o in outcomes] == [0, 1, 2]
        for o, params in zip(outcomes, PARAMS):
            expected, _ = run_metrics(SmaCrossover, demo, spec.start, spec.end, spec.capital_base, params)
            assert (o.status, o.error, o.worker, o.params) == ("complete", None, wid, params)
            assert o.metrics == expected  # bit-identical: same code on the same bytes
            assert o.duration_s > 0
    finally:
        pool2.release(spec.job_id)


def test_strategy_exception_fails_only_its_trial(pool2, demo, make_spec):
    spec = make_spec(pool2, demo, Fragile)
    pool2.prepare(spec)
    try:
        actor = next(iter(pool2.workers.values()))
        trials = [(0, {"fast": 5, "slow": 20}), (1, {"fast": 7, "slow": 20}), (2, {"fast": 10, "slow": 50})]
        outcomes = ray.get(actor.run_batch.remote(spec.job_id, trials))
        assert [o.status for o in outcomes] == ["complete", "failed", "complete"]
        failed = outcomes[1]
        assert failed.metrics is None
        assert "fast=7 is not supported here" in failed.error and "ValueError" in failed.error
        assert outcomes[2].metrics == run_metrics(Fragile, demo, spec.start, spec.end, 100_000.0, trials[2][1])[0]
    finally:
        pool2.release(spec.job_id)


class _ListSource:
    """A fixed list of trials for the scheduler (the simplest TrialSource)."""

    def __init__(self, trials: list) -> None:
        self.pending = list(trials)
        self.told: list = []

    def ask(self, n: int) -> list:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def tell(self, outcome) -> None:
        self.told.append(outcome)

    @property
    def is_finished(self) -> bool:
        return not self.pending


def test_trials_override_the_job_date_range_and_returns(pool2, demo, make_spec):
    """Walk-forward windows share one job: each trial may carry its own dates and ask for returns."""
    from rustybt_ray.cluster.scheduler import Scheduler

    spec = make_spec(pool2, demo, SmaCrossover, start="2010-01-01", end="2020-12-31")
    pool2.prepare(spec)
    ranges = [("2012-01-01", "2012-12-31"), ("2015-03-01", "2016-06-30"), (None, None)]
    trials = []
    for i, (params, rng) in enumerate(zip(PARAMS, ranges)):
        over = {"with_returns": True} if rng[0] is None else {"start": rng[0], "end": rng[1]}
        trials.append((i, params, over))
    try:
        results = Scheduler(pool2, spec).run(_ListSource(trials))
    finally:
        pool2.release(spec.job_id)
    assert sorted(results) == [0, 1, 2]
    for (number, params, over), rng in zip(trials, ranges):
        start = rng[0] or spec.start
        end = rng[1] or spec.end
        expected, returns = run_metrics(SmaCrossover, demo, start, end, spec.capital_base, params,
                                        with_returns=over.get("with_returns", False))
        outcome, attempts = results[number]
        assert outcome.metrics == expected
        assert attempts == 1
        if returns is None:
            assert outcome.returns is None
        else:
            assert outcome.returns.dtype.name == "float32"
            assert list(outcome.returns) == list(returns.astype("float32"))
