"""A real local Ray for the optimizer tests, started here and stopped by its handle."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import ray


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


@pytest.fixture
def resume_scenario():
    """The module a killed-driver test runs as its driver (imported by the same name as in that driver)."""
    here = str(Path(__file__).parent)
    sys.path.insert(0, here)
    try:
        return importlib.import_module("resume_scenario")
    finally:
        sys.path.remove(here)
