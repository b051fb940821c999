"""Fixtures of tests/vector; the helpers live in vector_testkit.py."""

from __future__ import annotations

import pytest

from rustybt_ray.data.bundle import Bundle


@pytest.fixture(scope="session")
def demo_bundle() -> Bundle:
    """The embedded demo bundle."""
    from rustybt_ray.data import load_bundle

    return load_bundle("demo")
