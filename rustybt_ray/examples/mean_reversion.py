"""Long/short mean reversion on the z-score of closes.

Each bar, per asset: ``z = (close - mean) / std`` over the trailing ``window`` closes
(``std`` with ``ddof=0``). Above ``entry``: short ``1 / n_assets``; below ``-entry``:
long ``1 / n_assets``; within ``±exit_band``: flat; in between, and where ``z`` is NaN
(a missing bar in the window): leave the position as it is. Written twice:
vectorized (:class:`MeanReversionVector`) and event-driven (:class:`MeanReversionEvent`).
"""

from __future__ import annotations

import numpy as np

from rustybt_ray.engine import BarData, TradingAlgorithm
from rustybt_ray.vector import VectorStrategy


def targets_from_z(z: np.ndarray, entry: float, exit_band: float, weight: float) -> np.ndarray:
    """Target weights from z-scores: ``-weight`` above ``entry``, ``+weight`` below ``-entry``, 0 near 0, else NaN."""
    with np.errstate(invalid="ignore"):
        return np.where(z > entry, -weight,
                        np.where(z < -entry, weight, np.where(np.abs(z) < exit_band, 0.0, np.nan)))


class MeanReversionVector(VectorStrategy):
    """Short stretched-up assets, buy stretched-down ones, close near the mean."""

    window = 20
    entry = 1.5
    exit_band = 0.25

    def weights(self) -> np.ndarray:
        """Per bar and asset, from the trailing z-score (see the module docstring)."""
        return targets_from_z(self.zscore(self.window), self.entry, self.exit_band, 1.0 / self.n_assets)


class MeanReversionEvent(TradingAlgorithm):
    """The same rules, event-driven: a z-score from each bar's ``data.history`` window."""

    window = 20
    entry = 1.5
    exit_band = 0.25

    def handle_data(self, data: BarData) -> None:
        """Order each asset whose target is known at this bar (per-asset ``order_target_percent``)."""
        closes = data.history(self.assets, "close", self.window, "1d", return_type="array")
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (closes[-1] - closes.mean(axis=0)) / closes.std(axis=0)
        target = targets_from_z(z, self.entry, self.exit_band, 1.0 / len(self.assets))
        for asset, w in zip(self.assets, target.tolist()):
            if w == w:  # NaN: hold
                self.order_target_percent(asset, w)
