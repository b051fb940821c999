"""Fixtures of tests/vector_ray: a real local Ray (as tests/optimize_ray starts it) and one 2-worker pool."""

from __future__ import annotations

import pytest
import ray

from rustybt_ray.data.bundle import Bundle


@pytest.fixture(scope="session")
def ray_session():
    """Local Ray with 4 logical CPUs (the machine has 2 cores; actors mostly wait on each other)."""
    started = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="package")
def pool(ray_session):
    """Two worker actors shared by this folder's tests (each compiles the kernel once)."""
    from rustybt_ray.cluster.pool import WorkerPool

    with WorkerPool(2) as p:
        yield p


@pytest.fixture(scope="session")
def demo() -> Bundle:
    """The embedded demo bundle."""
    from rustybt_ray.data import load_bundle

    return load_bundle("demo")
