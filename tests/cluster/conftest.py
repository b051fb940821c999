"""A real local Ray for the cluster tests, started here and stopped with ``ray.shutdown()``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import ray

from rustybt_ray.cluster import JobSpec, WorkerPool
from rustybt_ray.data import Bundle, load_bundle


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """Local Ray with 4 logical CPUs (2 real cores: actors mostly wait) and a small object store."""
    started = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 object_store_memory=256 * 2**20)
        started = True
    yield
    if started:  # a Ray someone else started is theirs to stop
        ray.shutdown()


@pytest.fixture(scope="session")
def demo() -> Bundle:
    """The built-in demo bundle (8 assets, 5031 daily bars, about 2 MB: stored in plasma, not inlined)."""
    return load_bundle("demo")


@pytest.fixture(scope="module")
def pool2(ray_local: None) -> Iterator[WorkerPool]:
    """Two workers shared by a module's tests (actor start-up is the slow part of these tests)."""
    with WorkerPool(2) as pool:
        yield pool


def _make_spec(pool: WorkerPool, bundle: Bundle, strategy: type, start: str = "2015-01-01",
               end: str = "2016-12-31") -> JobSpec:
    """A job spec for ``strategy`` on ``bundle``, its bundle put through the pool's store."""
    ref = pool.store.put(bundle)
    return JobSpec(uuid.uuid4().hex, strategy, [ref], bundle.version, start, end, 100_000.0)


@pytest.fixture
def make_spec() -> Callable[..., JobSpec]:
    """``make_spec(pool, bundle, strategy, start=..., end=...)``: a fresh job spec (a fixture, since
    test modules of several folders cannot all ``import conftest``)."""
    return _make_spec
