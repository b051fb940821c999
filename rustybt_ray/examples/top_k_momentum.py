"""Top-k momentum, rebalanced monthly: a ranking strategy for wide universes.

The classic "12-1" cross-sectional momentum: on the first trading day of each month,
score every asset by its return from ``lookback`` bars ago to ``skip`` bars ago (by
default about twelve months to one month: the most recent month is left out, where
short-term reversal lives), hold the ``top_k`` best at ``1 / top_k`` of the portfolio
each, and sell everything else. Written as a zipline user would write it::

    def initialize(context):
        schedule_function(rebalance, date_rules.month_start(), time_rules.market_open())

    def rebalance(context, data):
        closes = data.history(context.assets, "close", lookback + 1, "1d")
        ...
        for asset in context.assets:
            order_target_percent(asset, weight if asset in chosen else 0.0)

Rules, exactly:

* ``score = close[t - skip] / close[t - lookback] - 1`` from ``data.history`` of closes
  (``close``, not the forward-filled ``price``): an asset without a bar at either end,
  or without a bar today (it could not trade), is not ranked;
* the ``top_k`` highest scores are chosen; ties go to the lower column (the symbol
  first in alphabetical order); fewer than ``top_k`` ranked assets leave the rest of
  the portfolio in cash: the weight stays ``1 / top_k``;
* orders are sized at today's close and fill at the next bar's open (the engine's
  fill rule); nothing trades between rebalances.

Run it with ``rustybt-ray run rustybt_ray.examples.top_k_momentum:TopKMomentum --bundle sp500``
(``scripts/ingest_sp500.py`` makes that bundle; on ``demo`` pass ``--param top_k=3``).
"""

from __future__ import annotations

import numpy as np

from rustybt_ray.engine import BarData, TradingAlgorithm, date_rules, time_rules
from rustybt_ray.errors import StrategyError


def momentum_scores(closes: np.ndarray, skip: int, tradable: np.ndarray) -> np.ndarray:
    """Per-asset ``closes[-1 - skip] / closes[0] - 1``; NaN where an end is missing or the asset cannot trade.

    ``closes`` is a ``(lookback + 1, n_assets)`` window of closes ending today.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        score = closes[-1 - skip] / closes[0] - 1.0
    return np.where(tradable, score, np.nan)


def top_k_columns(scores: np.ndarray, k: int) -> list[int]:
    """Columns of the ``k`` highest finite scores, best first; ties to the lower column."""
    ranked = np.flatnonzero(np.isfinite(scores))
    # A stable sort of the negated scores keeps equal scores in column order.
    order = ranked[np.argsort(-scores[ranked], kind="stable")]
    return order[:k].tolist()


class TopKMomentum(TradingAlgorithm):
    """Hold the ``top_k`` assets by ``lookback``-to-``skip``-bar momentum, equal weight, rebalanced monthly."""

    top_k = 10
    lookback = 252  #: bars, about 12 months
    skip = 21  #: bars, about 1 month

    def initialize(self) -> None:
        """Check the parameters and schedule the monthly rebalance."""
        _check_params(self.top_k, self.lookback, self.skip)
        self.schedule_function(self.rebalance, date_rules.month_start(), time_rules.market_open())

    def chosen(self, data: BarData) -> list[int]:
        """The columns to hold from today: the top ``top_k`` by momentum."""
        closes = data.history(self.assets, "close", self.lookback + 1, "1d", return_type="array")
        scores = momentum_scores(closes, self.skip, ~np.isnan(closes[-1]))
        return top_k_columns(scores, self.top_k)

    def rebalance(self, data: BarData) -> None:
        """Buy the chosen assets up to ``1 / top_k`` each; sell the others."""
        chosen = set(self.chosen(data))
        weight = 1.0 / self.top_k
        for asset in self.assets:
            # A target of 0 for an asset neither held nor on order places nothing.
            self.order_target_percent(asset, weight if asset in chosen else 0.0)
        self.record(n_chosen=len(chosen))


class TopKMomentumBatch(TopKMomentum):
    """The same rules with one ``order_target_percents`` call per rebalance (the same orders, bit for bit).

    The batch call sizes every asset in one loop (NumPy from 65 assets on), which is
    what a 500-asset universe wants.
    """

    def rebalance(self, data: BarData) -> None:
        """Set every asset's target weight in one call."""
        chosen = self.chosen(data)
        weights = np.zeros(len(self.assets))
        weights[chosen] = 1.0 / self.top_k
        self.order_target_percents(weights)
        self.record(n_chosen=len(chosen))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_params(top_k: object, lookback: object, skip: object) -> None:
    for name, value in (("top_k", top_k), ("lookback", lookback)):
        if not _is_int(value) or value < 1:  # type: ignore[operator]
            raise StrategyError(f"TopKMomentum {name} must be an int >= 1, got {value!r}")
    if not _is_int(skip) or not 0 <= skip < lookback:  # type: ignore[operator]
        raise StrategyError(
            f"TopKMomentum skip must be an int with 0 <= skip < lookback ({lookback!r}), got {skip!r}: "
            "the score is the return from lookback bars ago to skip bars ago"
        )
