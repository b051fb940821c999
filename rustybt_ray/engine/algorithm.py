"""``TradingAlgorithm``: the class strategy authors subclass (zipline's event-driven contract).

A strategy in ten lines::

    class SmaCross(TradingAlgorithm):
        fast = 10                      # parameters: class attributes with defaults
        slow = 50

        def handle_data(self, data):
            closes = data.history(self.assets, "close", self.slow, "1d", return_type="array")
            for asset, f, s in zip(self.assets, closes[-self.fast:].mean(0), closes.mean(0)):
                self.order_target_percent(asset, 1 / len(self.assets) if f > s else 0.0)

Timing contract: ``handle_data(data)`` runs at the close of each bar ``t`` and sees
bars up to and including ``t``. An order placed at bar ``t`` fills at the next bar
on which its asset trades (``t + 1``'s open by default, or its close with
``fill_price='close'``), with slippage and commission applied. Orders are market
orders for whole shares (amounts are truncated toward zero, as in zipline).

Parameters: a run's parameter values are pinned before ``initialize`` runs, and an
assignment in ``initialize`` to a pinned name is ignored, so ``self.lookback = 20``
in ``initialize`` is only the default and an optimizer that varies ``lookback``
really varies it.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rustybt_ray.data.bundle import Asset
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.engine.orders import Order
from rustybt_ray.engine.rebalance import order_target_percents as _order_target_percents
from rustybt_ray.engine.schedule import DateRule, Scheduled, TimeRule, date_rules, time_rules
from rustybt_ray.errors import OrderError, StrategyError

if TYPE_CHECKING:
    from rustybt_ray.engine.bar_data import BarData
    from rustybt_ray.engine.result import BacktestResult


@dataclass(frozen=True)
class Position:
    """One holding: signed shares, average cost and the last price it was marked at."""

    asset: Asset
    amount: float
    cost_basis: float
    last_sale_price: float


class Positions(dict):  # type: ignore[type-arg]
    """Held positions by asset; a missing asset reads as a zero position (as in zipline)."""

    def __missing__(self, asset: Asset) -> Position:
        return Position(asset, 0.0, 0.0, float("nan"))


@dataclass(frozen=True)
class Portfolio:
    """The account at the current bar, marked at the last known prices."""

    cash: float
    positions: Positions
    positions_value: float
    portfolio_value: float
    starting_cash: float

    @property
    def pnl(self) -> float:
        """Profit since the start of the run."""
        return self.portfolio_value - self.starting_cash

    @property
    def returns(self) -> float:
        """Cumulative return since the start of the run."""
        return self.portfolio_value / self.starting_cash - 1.0


_HUGE = 1e300
_trunc = math.trunc
_mul = operator.mul
_NO_ORDERS_IN_INITIALIZE = (
    "orders cannot be placed in initialize(): place them in handle_data, a scheduled function "
    "or before_trading_start"
)


def _round_shares(x: float) -> float:
    # zipline's rule: snap amounts within 1e-4 of an integer, else truncate toward zero,
    # so 0.1 * 1000 / 10 == 9.999999999 still buys 10 shares. Computed as truncation plus
    # a correction, one call cheaper than round(): d = x - trunc(x) is exact, and
    # |x - (r + 1)| < 1e-4 <=> d > 1 - 1e-4 <=> d >= 0.9999, because the double 0.9999 is
    # the nearest one to 1 - 1e-4 and lies above it. Equal to the round() form for every
    # double (tests/engine/test_rebalance.py checks the boundaries).
    r = _trunc(x)
    d = x - r
    if d >= 0.9999:
        r += 1
    elif d <= -0.9999:
        r -= 1
    return float(r)


class TradingAlgorithm:
    """Base class of strategies. Override ``initialize`` and ``handle_data``; optionally
    ``before_trading_start`` and ``analyze``.

    Attributes available from ``initialize`` on: ``self.assets`` (every asset of the
    bundle, in column order), ``self.asset`` (the first of them, a convenience for
    one-asset strategies; assign your own in ``initialize``), ``self.bundle``,
    ``self.portfolio``. Class attributes that are not callables, properties or
    private names are the strategy's parameters (see :meth:`parameters`).
    """

    # -- user hooks --------------------------------------------------------------------

    def initialize(self) -> None:
        """Called once before the first bar: pick assets, set costs, schedule functions."""

    def handle_data(self, data: BarData) -> None:
        """Called at every bar with the market ``data`` up to and including this bar."""

    def before_trading_start(self, data: BarData) -> None:
        """Called before each session's first bar; ``data`` ends at the previous bar."""

    def analyze(self, result: BacktestResult) -> None:
        """Called once after the run with its :class:`BacktestResult`."""

    # -- parameters -----------------------------------------------------------------

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Parameter names and defaults: public, non-callable class attributes of the strategy."""
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or klass is TradingAlgorithm:
                continue
            for name, value in vars(klass).items():
                if name.startswith("_") or callable(value) or isinstance(value, (property, classmethod, staticmethod)):
                    continue
                out[name] = value
        return out

    # -- orders ---------------------------------------------------------------------

    def order(self, asset: Asset | str, amount: float, limit_price: Any = None, stop_price: Any = None,
              style: Any = None) -> int | None:
        """Buy (``amount > 0``) or sell ``amount`` shares; returns the order id, or None for zero shares."""
        _market_only(limit_price, stop_price, style)
        if type(asset) is not Asset:
            asset = self._rb_resolve(asset)
        return self._rb_place(asset, _round_shares(_finite("amount", amount)))

    def order_value(self, asset: Asset | str, value: float, limit_price: Any = None, stop_price: Any = None,
                    style: Any = None) -> int | None:
        """Trade ``value`` currency worth of the asset at its current price."""
        _market_only(limit_price, stop_price, style)
        if type(asset) is not Asset:
            asset = self._rb_resolve(asset)
        value = _finite("value", value)
        if value == 0:
            return None
        return self._rb_place(asset, _round_shares(value / self._rb_price_now(asset)))

    def order_percent(self, asset: Asset | str, percent: float, limit_price: Any = None,
                      stop_price: Any = None, style: Any = None) -> int | None:
        """Trade ``percent`` (0.1 = 10%) of the current portfolio value in the asset."""
        _market_only(limit_price, stop_price, style)
        return self.order_value(asset, _finite("percent", percent) * self._rb_portfolio_value())

    def order_target(self, asset: Asset | str, target: float, limit_price: Any = None, stop_price: Any = None,
                     style: Any = None) -> int | None:
        """Order what it takes to hold ``target`` shares, counting open orders of the asset."""
        _market_only(limit_price, stop_price, style)
        if type(asset) is not Asset:
            asset = self._rb_resolve(asset)
        return self._rb_to_target(asset, _finite("target", target))

    def order_target_value(self, asset: Asset | str, target: float, limit_price: Any = None,
                           stop_price: Any = None, style: Any = None) -> int | None:
        """Order what it takes to hold ``target`` currency worth of the asset."""
        _market_only(limit_price, stop_price, style)
        if type(asset) is not Asset:
            asset = self._rb_resolve(asset)
        target = _finite("target", target)
        if target == 0:
            return self._rb_to_target(asset, 0.0)
        return self._rb_to_target(asset, target / self._rb_price_now(asset))

    def order_target_percent(self, asset: Asset | str, target: float, limit_price: Any = None,
                             stop_price: Any = None, style: Any = None) -> int | None:
        """Order what it takes for the asset to be ``target`` (0.1 = 10%) of the portfolio value."""
        # The hottest call of a rebalancing strategy: _rb_to_target and _rb_place inlined.
        if limit_price is not None or stop_price is not None or style is not None:
            _market_only(limit_price, stop_price, style)
        if type(asset) is not Asset:
            asset = self._rb_resolve(asset)
        t = self._rb_data._t
        if self._rb_pv_t != t:
            self._rb_refresh()
        if target == 0:
            shares = 0.0
        else:
            price = self._rb_prow[asset]
            if not price > 0:
                price = self._rb_price_now(asset)
            shares = target * self._rb_pv / price
            if not -_HUGE < shares < _HUGE:
                _finite("target", target)
        x = shares - self._rb_held[asset]
        r = _trunc(x)  # _round_shares inlined
        d = x - r
        if d >= 0.9999:
            r += 1
        elif d <= -0.9999:
            r -= 1
        if not r:
            return None
        amount = float(r)
        if not self._rb_started:
            raise OrderError(_NO_ORDERS_IN_INITIALIZE)
        self._rb_held[asset] += amount
        return self._rb_book.place(asset, amount, t)

    #: Batch form of :meth:`order_target_percent`: one target weight per asset (see
    #: :func:`rustybt_ray.engine.rebalance.order_target_percents`).
    order_target_percents = _order_target_percents

    def get_open_orders(self, asset: Asset | None = None) -> dict[Asset, list[Order]] | list[Order]:
        """Open orders: a dict by asset, or the list for one asset."""
        orders = self._rb_book.open_orders(self._rb_bundle.calendar, None if asset is None else int(asset))
        if asset is not None:
            return orders
        out: dict[Asset, list[Order]] = {}
        for o in orders:
            out.setdefault(o.asset, []).append(o)
        return out

    def get_order(self, order_id: int) -> Order | None:
        """The open order with this id, or None if it is not open."""
        return next((o for o in self._rb_book.open_orders(self._rb_bundle.calendar) if o.id == order_id), None)

    def cancel_order(self, order_param: int | Order) -> None:
        """Cancel an open order (by id or :class:`Order`)."""
        self._rb_book.cancel(order_param.id if isinstance(order_param, Order) else int(order_param))
        self._rb_pv_t = -2

    # -- bookkeeping and set-up -----------------------------------------------------

    def record(self, **values: Any) -> None:
        """Record named values at this bar; they become columns of ``result.bars`` (carried forward)."""
        i = self._rb_data._t + self._rb_btd - self._rb_i0
        rec = self._rb_recorded
        for name, value in values.items():
            col = rec.get(name)
            if col is None:
                col = rec[name] = np.full(self._rb_n, np.nan)
            try:
                col[i] = value
            except (TypeError, ValueError):
                if col.dtype != object:
                    col = rec[name] = col.astype(object)
                col[i] = value

    def symbol(self, symbol_str: str) -> Asset:
        """The asset with this symbol in the run's bundle."""
        return self._rb_bundle.symbol(symbol_str)

    def symbols(self, *symbol_strs: str) -> list[Asset]:
        """Assets for several symbols."""
        return [self._rb_bundle.symbol(s) for s in symbol_strs]

    def schedule_function(self, func: Callable[..., Any], date_rule: DateRule | None = None,
                          time_rule: TimeRule | None = None, half_days: bool = True,
                          calendar: Any = None) -> None:
        """Run ``func`` on the bars picked by ``date_rule`` and ``time_rule`` (before ``handle_data``).

        ``func`` is called as ``func(context, data)`` like zipline (``context`` is this
        algorithm), or ``func(data)`` if it takes one argument (a bound method
        ``def rebalance(self, data)``). Call it from ``initialize``.
        """
        if self._rb_started:
            raise StrategyError("schedule_function must be called from initialize(), before the first bar")
        nargs = _positional_arity(func)
        call = func if nargs == 1 else (lambda data, _f=func: _f(self, data))
        self._rb_scheduled.append(
            Scheduled(call, date_rule or date_rules.every_day(), time_rule or time_rules.market_open())
        )

    def set_commission(self, model: CommissionModel | None = None, *, us_equities: CommissionModel | None = None,
                       us_futures: Any = None) -> None:
        """Use ``model`` (or zipline's ``us_equities=``) for every later fill."""
        chosen = us_equities or model
        if not isinstance(chosen, CommissionModel):
            raise StrategyError(f"set_commission needs a commission model such as PerShare(0.001), got {chosen!r}")
        self._rb_ledger.commission = chosen

    def set_slippage(self, model: SlippageModel | None = None, *, us_equities: SlippageModel | None = None,
                     us_futures: Any = None) -> None:
        """Use ``model`` (or zipline's ``us_equities=``) for every later fill."""
        chosen = us_equities or model
        if not isinstance(chosen, SlippageModel):
            raise StrategyError(
                f"set_slippage needs a slippage model such as FixedBasisPointsSlippage(5), got {chosen!r}"
            )
        self._rb_ledger.slippage = chosen

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> np.ndarray:
        """A derived array shared across the trials this process runs (computed once per bundle version).

        Use it for data that depends on the bundle and a parameter but not on the
        trial's own state, e.g. ``self.cached(("sma", self.fast), lambda:
        rolling_mean(self.bundle.close, self.fast))``. ``key`` must capture every input
        of ``compute`` besides the bundle. The array is read-only. In a worker pool the
        cache is the worker's; in a plain run it is a process-wide one.
        """
        return self._rb_cache.get_or_compute((self._rb_bundle.version, key), compute)

    @property
    def portfolio(self) -> Portfolio:
        """Cash, positions and value at the current bar."""
        t = max(self._rb_data._t, 0)
        ledger = self._rb_ledger
        prices = self._rb_price[t]
        held = [i for i, q in enumerate(ledger.pos) if q]
        positions = Positions(
            (self._rb_assets[i], Position(self._rb_assets[i], ledger.pos[i], ledger.cost[i], float(prices[i])))
            for i in held
        )
        value = float(sum(ledger.pos[i] * float(prices[i]) for i in held))
        return Portfolio(ledger.cash, positions, value, ledger.cash + value, self._rb_capital)

    @property
    def account(self) -> Portfolio:
        """Alias of :attr:`portfolio` for code written against zipline's ``context.account``."""
        return self.portfolio

    def get_datetime(self, tz: Any = None) -> Any:
        """The current bar's timestamp as a ``pandas.Timestamp`` (naive, as the bundle stores it)."""
        import pandas as pd

        ts = pd.Timestamp(self._rb_bundle.calendar[max(self._rb_data._t, 0)])
        return ts.tz_localize(tz) if tz is not None else ts

    # -- engine internals (names prefixed _rb_ to stay clear of user attributes) -------

    def _rb_resolve(self, asset: Any) -> Asset:
        if isinstance(asset, str):
            return self._rb_bundle.symbol(asset)
        if isinstance(asset, (int, np.integer)) and 0 <= int(asset) < len(self._rb_assets):
            return self._rb_assets[int(asset)]
        raise OrderError(f"cannot order {asset!r}: pass an Asset (self.symbol('AAPL')) or a symbol string")

    def _rb_price_now(self, asset: Asset) -> float:
        t = self._rb_data._t
        price = float(self._rb_price[t, asset]) if t >= 0 else math.nan
        if not price > 0:
            raise OrderError(
                f"{asset.symbol} has no price at {self._rb_bundle.calendar[max(t, 0)]!s:.19} "
                f"(first bar {asset.start_date!s:.10}); check data.can_trade(asset) before ordering it"
            )
        return price

    def _rb_refresh(self) -> None:
        # Per-bar view for order sizing in plain floats: prices, held-or-ordered shares and
        # portfolio value. Valid until the bar changes, a fill lands or an order is cancelled.
        t = self._rb_data._t
        ledger = self._rb_ledger
        book = self._rb_book
        if t < 0:
            self._rb_prow = [math.nan] * len(self._rb_assets)
            self._rb_pv = ledger.cash
        elif self._rb_lists:
            # Marks: the bundle's price rows as lists with NaN (no price yet) as 0.0, shared
            # by the process's trials (rows.py), or this row converted. A flat asset adds
            # nothing either way; with a NaN mark the flat assets are skipped instead.
            # rebalance.order_target_percents computes the same.
            rows = self._rb_marks
            self._rb_prow = prow = rows[t] if rows is not None else self._rb_price[t].tolist()
            pv = ledger.cash + sum(map(_mul, ledger.pos, prow))
            self._rb_pv = pv if pv == pv else ledger.cash + sum([q * p for q, p in zip(ledger.pos, prow) if q])
        else:
            row = self._rb_price[t]
            self._rb_prow = row.tolist()
            self._rb_pv = ledger.value(row)
        self._rb_held = [q + o for q, o in zip(ledger.pos, book.open_amounts())] if book._ids else ledger.pos.copy()
        self._rb_pv_t = t

    def _rb_portfolio_value(self) -> float:
        if self._rb_pv_t != self._rb_data._t:
            self._rb_refresh()
        return self._rb_pv

    def _rb_to_target(self, asset: Asset, target_shares: float) -> int | None:
        if self._rb_pv_t != self._rb_data._t:
            self._rb_refresh()
        return self._rb_place(asset, _round_shares(target_shares - self._rb_held[asset]))

    def _rb_place(self, asset: Asset, amount: float) -> int | None:
        if amount == 0:
            return None
        t = self._rb_data._t
        if not self._rb_started:
            raise OrderError(_NO_ORDERS_IN_INITIALIZE)
        if self._rb_pv_t == t:
            if not self._rb_prow[asset] > 0:
                self._rb_price_now(asset)  # raises: the asset has no price yet
            self._rb_held[asset] += amount
        elif not self._rb_price[t, asset] > 0:
            self._rb_price_now(asset)
        return self._rb_book.place(asset, amount, t)


def _finite(what: str, x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise OrderError(f"order {what} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise OrderError(f"order {what} must be finite, got {x!r} (a NaN signal? check your indicator's warm-up)")
    return v


def _market_only(limit_price: Any, stop_price: Any, style: Any) -> None:
    if limit_price is not None or stop_price is not None or style is not None:
        raise OrderError("only market orders are supported: drop limit_price, stop_price and style")


def _positional_arity(func: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    n = sum(1 for p in params if p.kind in kinds)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    if n not in (1, 2):
        raise StrategyError(f"scheduled function {func!r} must take (context, data) or (data), it takes {n} arguments")
    return n


def pinned_params(cls: type[TradingAlgorithm], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate run parameter names against the strategy; names must not clash with the engine API."""
    params = dict(params or {})
    for name in params:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise StrategyError(f"parameter name {name!r} must be a public Python identifier")
        if hasattr(TradingAlgorithm, name):
            raise StrategyError(f"parameter {name!r} would hide TradingAlgorithm.{name}; rename the parameter")
    return params
