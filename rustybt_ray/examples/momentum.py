"""Monthly-rebalanced momentum: hold the ``top_k`` assets with the best trailing return, equal weight.

On the first bar of each calendar month, rank the assets by their ``lookback``-bar
return of closes (``close[t] / close[t - lookback] - 1``; an asset without both bars
is not ranked), buy the best ``top_k`` at ``1 / top_k`` each and sell the rest.
Between rebalances nothing is traded. Ties go to the lower column. Written twice:
vectorized (:class:`MomentumVector`) and event-driven (:class:`MomentumEvent`).
"""

from __future__ import annotations

import numpy as np

from rustybt_ray.engine import BarData, TradingAlgorithm
from rustybt_ray.vector import VectorStrategy


def month_starts(calendar: np.ndarray) -> np.ndarray:
    """True at the first bar of each calendar month (and at the first bar)."""
    months = calendar.astype("datetime64[M]")
    return np.r_[True, months[1:] != months[:-1]]


class MomentumVector(VectorStrategy):
    """Top-``top_k`` by trailing ``lookback``-bar return, rebalanced on each month's first bar."""

    lookback = 60
    top_k = 3

    def weights(self) -> np.ndarray:
        """``1/top_k`` for the top ranks on rebalance bars, 0 for the others, NaN (hold) between rebalances."""
        ret = self.returns(self.lookback)
        chosen = self.rank(ret) <= self.top_k  # NaN ranks compare False
        rebalance = self.cached(("month_starts",), lambda: month_starts(self.calendar))[:, None]
        return np.where(rebalance, np.where(chosen, 1.0 / self.top_k, 0.0), np.nan)


class MomentumEvent(TradingAlgorithm):
    """The same rules, event-driven, from ``data.history`` windows."""

    lookback = 60
    top_k = 3

    def initialize(self) -> None:
        """Find the rebalance bars."""
        self.rebalance = month_starts(self.bundle.calendar)

    def handle_data(self, data: BarData) -> None:
        """On a month's first bar: rank by trailing return, order the top ``top_k`` and sell the rest."""
        if not self.rebalance[data.bar_index]:
            return
        closes = data.history(self.assets, "close", self.lookback + 1, "1d", return_type="array")
        with np.errstate(divide="ignore", invalid="ignore"):
            ret = closes[-1] / closes[0] - 1.0
        order = np.argsort(-ret, kind="stable")  # NaN last
        target = np.zeros(len(self.assets))
        for a in order[: self.top_k]:
            if np.isfinite(ret[a]):
                target[a] = 1.0 / self.top_k
        for asset, w in zip(self.assets, target.tolist()):
            self.order_target_percent(asset, w)
