"""Fixtures for the data tests: a private registry root per test and CSV directory writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bundle_testkit import HEADER, ROWS, write_csv_dir

from rustybt_ray.data import registry


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    """A valid three-symbol daily CSV directory."""
    return write_csv_dir(tmp_path / "csv", ROWS)


@pytest.fixture
def make_csv_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_csv_dir({"AAA": [...]})`` writes a fresh CSV directory."""
    counter = iter(range(1_000_000))

    def make(rows: dict[str, list[str]], header: str = HEADER) -> Path:
        return write_csv_dir(tmp_path / f"csv{next(counter)}", rows, header)

    return make


@pytest.fixture(autouse=True)
def bundle_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own registry root via RUSTYBT_BUNDLE_ROOT, and a cold cache."""
    root = tmp_path / "bundles"
    monkeypatch.setenv("RUSTYBT_BUNDLE_ROOT", str(root))
    registry.clear_cache()
    return root
