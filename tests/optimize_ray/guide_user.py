"""What the user guide's examples assume the user has: a strategy ``MyStrategy`` and a bundle ``my_bundle``.

Shared by the tests that run the guide's Grid Search and Walk Forward examples as written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rustybt_ray import TradingAlgorithm, ingest_bundle, load_bundle


class MyStrategy(TradingAlgorithm):
    """A user strategy with the two parameters the guide's grid varies."""

    threshold = 0.01

    def initialize(self):
        self.lookback = 20

    def handle_data(self, data):
        prices = data.history(assets=self.asset, fields="close", bar_count=self.lookback, frequency="1d",
                              return_type="array")
        momentum = prices[-1] / np.mean(prices) - 1.0
        self.order_target_percent(self.asset, 1.0 if momentum > self.threshold else 0.0)


def register_my_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_day: str) -> None:
    """Register ``my_bundle`` (the demo data from ``first_day`` to 2023) under a throwaway bundle root."""
    monkeypatch.setenv("RUSTYBT_BUNDLE_ROOT", str(tmp_path / "bundles"))
    ingest_bundle("my_bundle", load_bundle("demo").slice(first_day, "2023-12-31").to_long_frame())
