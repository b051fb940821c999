"""Dual moving average crossover on one asset: a port of zipline-reloaded's ``dual_moving_average.py``.

zipline's example, line for line: skip the first 300 bars so that both windows are
full, then hold 100 shares of AAPL while its 100-day average price is above its
300-day average, and none while it is below (``order_target``, which counts what is
held and on order). ``record`` keeps the price and both averages for inspection.

What differs from zipline, and why:

* the example is a class (parameters are class attributes, so a sweep can vary the
  windows); ``context`` is ``self``;
* zipline's example sets ``VolumeShareSlippage()`` in ``initialize``; here the fills take
  the run's slippage (the engine's default ``FixedBasisPointsSlippage(5)``, whole at the
  next bar's open), so that the port runs on bundles without reliable volume; pass
  ``slippage=VolumeShareSlippage()`` to ``run_algorithm`` for zipline's exact set-up.
  The commission is the example's ``PerShare(cost=0.0075, min_trade_cost=1.0)``.

Run it with ``rustybt-ray run rustybt_ray.examples.dual_moving_average:DualMovingAverage``.
"""

from __future__ import annotations

from rustybt_ray.engine import BarData, PerShare, TradingAlgorithm


class DualMovingAverage(TradingAlgorithm):
    """Hold ``shares`` of ``ticker`` while its ``short_window`` average price is above its ``long_window`` one."""

    ticker = "AAPL"
    short_window = 100
    long_window = 300
    shares = 100

    def initialize(self) -> None:
        """Pick the asset, start the bar counter and set zipline's example commission."""
        self.sym = self.symbol(self.ticker)
        self.i = 0
        self.set_commission(PerShare(cost=0.0075, min_trade_cost=1.0))

    def handle_data(self, data: BarData) -> None:
        """After ``long_window`` bars: order to ``shares`` on an up-cross state, to 0 on a down-cross state."""
        # Skip the first long_window bars to get full windows (zipline: 300).
        self.i += 1
        if self.i < self.long_window:
            return
        short_mavg = data.history(self.sym, "price", self.short_window, "1d").mean()
        long_mavg = data.history(self.sym, "price", self.long_window, "1d").mean()
        if short_mavg > long_mavg:
            self.order_target(self.sym, self.shares)
        elif short_mavg < long_mavg:
            self.order_target(self.sym, 0)
        self.record(short_mavg=short_mavg, long_mavg=long_mavg,
                    **{self.ticker: data.current(self.sym, "price")})
