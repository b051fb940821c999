"""Intraday breakout on minute (or hourly) bars: levels from daily history, in after the open, out before the close.

Each session, ``entry_minutes`` after the open (``time_rules.market_open``), the
price is compared with the previous ``lookback`` completed sessions, read as daily
bars with ``data.history(..., frequency="1d")``. Above their highest high times
``1 + band``, the strategy buys ``weight / n_assets`` of the portfolio per asset. Below
their lowest low times ``1 - band``, it sells that much short (if ``allow_short``).
Otherwise it stays flat. Every position is closed ``exit_minutes`` before the close
(``time_rules.market_close``), so nothing is held overnight. Until ``lookback``
sessions have passed, the levels are NaN and nothing is bought.
"""

from __future__ import annotations

from rustybt_ray.engine import BarData, TradingAlgorithm, date_rules, time_rules


class IntradayBreakout(TradingAlgorithm):
    """Break out of the last ``lookback`` sessions' range at ``entry_minutes`` after the open; flat by the close."""

    lookback = 3
    entry_minutes = 30
    exit_minutes = 15
    band = 0.0
    weight = 1.0
    allow_short = True

    def initialize(self) -> None:
        """Schedule the entry and the exit (the parameters are already the run's values here)."""
        self.schedule_function(self.enter, date_rules.every_day(), time_rules.market_open(minutes=self.entry_minutes))
        self.schedule_function(self.exit, date_rules.every_day(), time_rules.market_close(minutes=self.exit_minutes))

    def enter(self, data: BarData) -> None:
        """Go long above the prior sessions' high, short below their low, else flat."""
        bars = data.history(self.assets, ["high", "low"], self.lookback + 1, "1d", return_type="array")
        prior = bars[:-1]  # the last row is today so far: not a level to break out of
        high = prior[:, :, 0].max(axis=0)  # NaN while a prior session is missing: no signal
        low = prior[:, :, 1].min(axis=0)
        price = data.current(self.assets, "price")
        w = self.weight / len(self.assets)
        up = price > high * (1.0 + self.band)
        down = price < low * (1.0 - self.band)
        for asset, u, d in zip(self.assets, up.tolist(), down.tolist(), strict=True):
            # A target of 0 on a flat asset orders nothing, so no check for a position is needed.
            self.order_target_percent(asset, w if u else (-w if d and self.allow_short else 0.0))

    def exit(self, data: BarData) -> None:
        """Close every position before the session ends."""
        for asset in self.assets:
            self.order_target(asset, 0)
