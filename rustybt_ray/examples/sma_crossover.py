"""SMA crossover over every asset of the bundle: the quick start's strategy.

Each bar, every asset whose fast moving average of closes is above its slow one
gets an equal share of the portfolio (``1 / n_assets``); the others are sold.
Run it with ``rustybt-ray run rustybt_ray.examples.sma_crossover:SmaCrossover``.
"""

from __future__ import annotations

import warnings

import numpy as np

from rustybt_ray.engine import TradingAlgorithm
from rustybt_ray.engine import BarData, rolling_mean


class SmaCrossover(TradingAlgorithm):
    """Long the assets whose ``fast``-bar SMA is above their ``slow``-bar SMA, equal weight."""

    fast = 10
    slow = 50

    def handle_data(self, data: BarData) -> None:
        """Rebalance every asset to its target weight at this bar's close."""
        closes = data.history(self.assets, "close", self.slow, "1d", return_type="array")
        fast_ma = closes[-self.fast :].mean(axis=0)
        slow_ma = closes.mean(axis=0)
        weight = 1.0 / len(self.assets)
        for asset, f, s in zip(self.assets, fast_ma, slow_ma):
            self.order_target_percent(asset, weight if f > s else 0.0)


class SmaCrossoverDataFrame(SmaCrossover):
    """The same rules written with pandas DataFrames (``return_type='dataframe'``)."""

    def handle_data(self, data: BarData) -> None:
        """Rebalance from DataFrame windows instead of arrays."""
        closes = data.history(self.assets, "close", self.slow, "1d")
        fast_ma = closes.iloc[-self.fast :].mean(skipna=False)
        slow_ma = closes.mean(skipna=False)
        weight = 1.0 / len(self.assets)
        for asset in self.assets:
            self.order_target_percent(asset, weight if fast_ma[asset] > slow_ma[asset] else 0.0)


class SmaCrossoverNatural(SmaCrossover):
    """The same rules as strategy authors often write them: ``np.nanmean`` windows, ``data.can_trade`` per asset.

    It skips assets without a bar, and averages what a window holds (a window reaching
    before an asset's listing averages the bars it has, where :class:`SmaCrossover` sees
    NaN and stays out). On data without missing bars the two are the same strategy. The
    benchmarks use it as the event path's "what users write" speed.
    """

    def handle_data(self, data: BarData) -> None:
        """Rebalance every tradable asset to its target weight."""
        closes = data.history(self.assets, "close", self.slow, "1d", return_type="array")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column not listed yet: "Mean of empty slice"
            fast_ma = np.nanmean(closes[-self.fast :], axis=0)
            slow_ma = np.nanmean(closes, axis=0)
        weight = 1.0 / len(self.assets)
        for asset, f, s in zip(self.assets, fast_ma, slow_ma):
            if data.can_trade(asset):
                self.order_target_percent(asset, weight if f > s else 0.0)


class SmaCrossoverCached(SmaCrossover):
    """The same rules with both moving averages from the worker's array cache.

    A sweep over (fast, slow) computes each window's moving average once per worker
    instead of once per bar per trial. ``rolling_mean`` is NaN-propagating and
    trailing, like the mean of a ``history`` window that holds a NaN. Each bar
    rebalances every asset in one :meth:`order_target_percents` call; the orders are
    those of :class:`SmaCrossover`'s per-asset calls.
    """

    def initialize(self) -> None:
        """Fetch (or compute once) the moving averages; derive this trial's target weights."""
        close = self.bundle.close
        self.fast_ma = self.cached(("sma", self.fast), lambda: rolling_mean(close, self.fast))
        self.slow_ma = self.cached(("sma", self.slow), lambda: rolling_mean(close, self.slow))
        # Both averages are trailing, so row t of the weights uses bars up to t only: one
        # NumPy call here does what handle_data would do bar by bar, without NumPy's
        # per-call overhead at every bar (at 8 assets that overhead is a fifth of a
        # bar's cost). A NaN average compares False: weight 0, as in SmaCrossover.
        self.weights = np.where(self.fast_ma > self.slow_ma, 1.0 / len(self.assets), 0.0)

    def handle_data(self, data: BarData) -> None:
        """Rebalance every asset to this bar's target weights."""
        self.order_target_percents(self.weights[data.bar_index])


from rustybt_ray.vector import VectorStrategy  # noqa: E402  (after the event-driven forms it mirrors)


class SmaCrossoverVector(VectorStrategy):
    """:class:`SmaCrossover`'s rules as a :class:`VectorStrategy`: equal weight where fast SMA > slow SMA.

    The averages are ``rolling_mean`` (as :class:`SmaCrossoverCached`), a NaN average
    compares False: weight 0, as in :class:`SmaCrossover`.
    """

    fast = 10
    slow = 50

    def weights(self) -> np.ndarray:
        """Row t: ``1 / n_assets`` where the fast average is above the slow one at bar t, else 0."""
        return np.where(self.sma(self.fast) > self.sma(self.slow), 1.0 / self.n_assets, 0.0)
