"""``cluster/`` raises typed errors (``RustyBTError`` subclasses), and refuses a bad worker count before Ray starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rustybt_ray.cluster import BundleStore, WorkerPool
from rustybt_ray.errors import ClusterError, ConfigError, RustyBTError, WorkerCountError, WorkerPoolClosedError


def test_the_error_classes_keep_the_builtin_bases_callers_caught():
    assert issubclass(WorkerCountError, ValueError) and issubclass(WorkerCountError, ConfigError)
    assert issubclass(WorkerPoolClosedError, ClusterError) and issubclass(ClusterError, RuntimeError)
    assert issubclass(ClusterError, RustyBTError)


@pytest.mark.parametrize("n", [0, -2, 2.5, True, "4"])
def test_a_bad_worker_count_is_refused_before_ray_starts(n):
    """In a subprocess: this process's Ray may already be running for other tests."""
    code = (
        "import ray\n"
        "from rustybt_ray.cluster import WorkerPool\n"
        "from rustybt_ray.errors import WorkerCountError\n"
        f"try:\n    WorkerPool({n!r})\n"
        "except WorkerCountError as e:\n    print('REFUSED', e)\n"
        "print('RAY', ray.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "REFUSED n_workers must be a positive int" in out.stdout and "RAY False" in out.stdout, out


def test_disagreeing_counts_and_a_bad_store_size_are_typed():
    with pytest.raises(WorkerCountError, match="disagree"):
        WorkerPool(1, n_jobs=2)
    for bad in (0, -1):
        with pytest.raises(WorkerCountError, match="max_entries"):
            BundleStore(max_entries=bad)


def test_a_closed_pool_raises_worker_pool_closed_error(ray_local):
    pool = WorkerPool(1)
    pool.close()
    with pytest.raises(WorkerPoolClosedError, match="closed"):
        pool.health_check()
