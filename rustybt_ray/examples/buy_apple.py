"""Buy Apple: a port of zipline's ``buyapple.py``, and a one-order buy-and-hold.

:class:`BuyApple` is zipline's simplest example: order 10 shares of AAPL on every
bar and record its price. Each order fills whole at the next bar's open, so a run of
``n`` bars ends holding ``10 * (n - 1)`` shares (the last bar's order is still open)
and the cash goes negative once the purchases exceed the capital, as in zipline,
which does not check buying power either. The commission is the example's
``PerShare(cost=0.0075, min_trade_cost=1.0)``: 10 shares cost the $1 minimum. zipline
sets ``VolumeShareSlippage()``; here fills take the run's slippage (default
``FixedBasisPointsSlippage(5)``; pass ``slippage=VolumeShareSlippage()`` to
``run_algorithm`` for zipline's).

:class:`BuyAndHold` puts ``weight`` of the capital into the asset on the first bar
and then never trades: the baseline every timing strategy is compared with.

Run them with ``rustybt-ray run rustybt_ray.examples.buy_apple:BuyApple`` (on the demo bundle).
"""

from __future__ import annotations

from rustybt_ray.engine import BarData, PerShare, TradingAlgorithm


class BuyApple(TradingAlgorithm):
    """Order ``shares`` of ``ticker`` at every bar (zipline's ``buyapple.py``)."""

    ticker = "AAPL"
    shares = 10

    def initialize(self) -> None:
        """Pick the asset and set the example's commission."""
        self.asset = self.symbol(self.ticker)
        self.set_commission(PerShare(cost=0.0075, min_trade_cost=1.0))

    def handle_data(self, data: BarData) -> None:
        """Buy ``shares`` more and record the price."""
        self.order(self.asset, self.shares)
        self.record(**{self.ticker: data.current(self.asset, "price")})


class BuyAndHold(TradingAlgorithm):
    """Invest ``weight`` of the portfolio in ``ticker`` at the first bar, then hold."""

    ticker = "AAPL"
    weight = 1.0

    def initialize(self) -> None:
        """Pick the asset."""
        self.asset = self.symbol(self.ticker)
        self.bought = False

    def handle_data(self, data: BarData) -> None:
        """Place the one order, on the first bar the asset can trade."""
        if not self.bought and data.can_trade(self.asset):
            self.order_target_percent(self.asset, self.weight)
            self.bought = True
