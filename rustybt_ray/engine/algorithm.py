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
``fill_price='close'``), with slippage and commission applied. Orders are for whole
shares (amounts are truncated toward zero, as in zipline) unless the run has
``fractional_shares=True``; market orders by default, or limit, stop and stop-limit
orders (``style=``, see :mod:`rustybt_ray.engine.orders` for the fill rules), which
stay open until they fill or are cancelled.

Parameters: a run's parameter values are pinned before ``initialize`` runs, and an
assignment in ``initialize`` to a pinned name is ignored, so ``self.lookback = 20``
in ``initialize`` is only the default and an optimizer that varies ``lookback``
really varies it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rustybt_ray.data.bundle import Asset
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.engine.orders import ExecutionStyle, Order, order_style
from rustybt_ray.engine.rebalance import order_target_percents as _order_target_percents
from rustybt_ray.engine.schedule import (
    DateRule,
    Scheduled,
    TimeRule,
    date_rules,
    time_rules,
)
from rustybt_ray.engine.shares import NEG_SNAP_FRACTION, SNAP_FRACTION
from rustybt_ray.errors import OrderError, StrategyError

if TYPE_CHECKING:
    from rustybt_ray.engine.bar_data import BarData
    from rustybt_ray.engine.result import BacktestResult
    from rustybt_ray.engine.state import RunState


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


#: Class attributes that configure how a sweep runs the strategy, never swept as parameters.
SWEEP_SETTINGS = frozenset({"route_by"})


class TradingAlgorithm:
    """Base class of strategies. Override ``initialize`` and ``handle_data``; optionally
    ``before_trading_start`` and ``analyze``.

    Attributes available from ``initialize`` on: ``self.assets`` (every asset of the
    bundle, in column order), ``self.asset`` (the first of them, a convenience for
    one-asset strategies; assign your own in ``initialize``), ``self.bundle``,
    ``self.portfolio``. Class attributes that are not callables, properties or
    private names are the strategy's parameters (see :meth:`parameters`).

    During a run the engine's state is one attribute, ``_rb`` (a
    :class:`~rustybt_ray.engine.state.RunState`); a strategy must not assign it.
    """

    _rb: RunState

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
        """Parameter names and defaults: public, non-callable class attributes of the strategy.

        ``route_by`` (which parameters pick a trial's worker, see
        ``cluster.protocol.route_for``) is a setting of the sweep, not a parameter.
        """
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or klass is TradingAlgorithm:
                continue
            for name, value in vars(klass).items():
                if (name.startswith("_") or name in SWEEP_SETTINGS or callable(value)
                        or isinstance(value, (property, classmethod, staticmethod))):
                    continue
                out[name] = value
        return out

    # -- orders ---------------------------------------------------------------------

    def order(self, asset: Asset | str, amount: float, limit_price: float | None = None,
              stop_price: float | None = None, style: ExecutionStyle | None = None) -> int | None:
        """Buy (``amount > 0``) or sell ``amount`` shares; returns the order id, or None for zero shares.

        ``style`` (``MarketOrder()``, ``LimitOrder(p)``, ``StopOrder(p)``,
        ``StopLimitOrder(limit, stop)``) or ``limit_price``/``stop_price`` make it a
        limit, stop or stop-limit order; the fill rules are in
        :mod:`rustybt_ray.engine.orders`. Every ``order*`` method takes them.
        """
        spec = order_style(limit_price, stop_price, style)
        state = self._rb
        if type(asset) is not Asset:
            asset = state.resolve(asset)
        return state.place(asset, state.share_rule(_finite("amount", amount)), spec)

    def order_value(self, asset: Asset | str, value: float, limit_price: float | None = None,
                    stop_price: float | None = None, style: ExecutionStyle | None = None) -> int | None:
        """Trade ``value`` currency worth of the asset, sized at its current price (whatever the style)."""
        spec = order_style(limit_price, stop_price, style)
        state = self._rb
        if type(asset) is not Asset:
            asset = state.resolve(asset)
        value = _finite("value", value)
        if value == 0:
            return None
        return state.place(asset, state.share_rule(value / state.price_now(asset)), spec)

    def order_percent(self, asset: Asset | str, percent: float, limit_price: float | None = None,
                      stop_price: float | None = None, style: ExecutionStyle | None = None) -> int | None:
        """Trade ``percent`` (0.1 = 10%) of the current portfolio value in the asset."""
        return self.order_value(asset, _finite("percent", percent) * self._rb.portfolio_value(),
                                limit_price, stop_price, style)

    def order_target(self, asset: Asset | str, target: float, limit_price: float | None = None,
                     stop_price: float | None = None, style: ExecutionStyle | None = None) -> int | None:
        """Order what it takes to hold ``target`` shares, counting open orders of the asset (of every style)."""
        spec = order_style(limit_price, stop_price, style)
        state = self._rb
        if type(asset) is not Asset:
            asset = state.resolve(asset)
        return state.to_target(asset, _finite("target", target), spec)

    def order_target_value(self, asset: Asset | str, target: float, limit_price: float | None = None,
                           stop_price: float | None = None, style: ExecutionStyle | None = None) -> int | None:
        """Order what it takes to hold ``target`` currency worth of the asset."""
        return self._to_value(asset, _finite("target", target), order_style(limit_price, stop_price, style))

    def order_target_percent(self, asset: Asset | str, target: float, limit_price: float | None = None,
                             stop_price: float | None = None, style: ExecutionStyle | None = None) -> int | None:
        """Order what it takes for the asset to be ``target`` (0.1 = 10%) of the portfolio value."""
        # The hottest call of a rebalancing strategy: RunState.to_target and .place inlined
        # for market orders; other styles and fractional shares take RunState.to_target.
        state = self._rb
        if limit_price is not None or stop_price is not None or style is not None or state.fractional:
            return self._target_percent_general(asset, target, order_style(limit_price, stop_price, style))
        if type(asset) is not Asset:
            asset = state.resolve(asset)
        t = state.data._t
        if state.pv_t != t:
            state.refresh()
        if target == 0:
            shares = 0.0
        else:
            price = state.prow[asset]
            if not price > 0:
                price = state.price_now(asset)
            shares = target * state.pv / price
            if not -_HUGE < shares < _HUGE:
                _finite("target", target)
        x = shares - state.held[asset]
        r = _trunc(x)  # shares.round_shares inlined
        d = x - r
        if d >= SNAP_FRACTION:
            r += 1
        elif d <= NEG_SNAP_FRACTION:
            r -= 1
        if not r:
            return None
        amount = float(r)
        state.held[asset] += amount
        # The book refuses it in initialize(); the view is rebuilt at the first bar anyway.
        return state.book.place(asset, amount, t)

    def _target_percent_general(self, asset: Asset | str, target: float,
                                spec: tuple[float | None, float | None] | None) -> int | None:
        # order_target_percent for non-market styles and fractional shares: the same sizing.
        target = _finite("target", target)
        return self._to_value(asset, target * self._rb.portfolio_value() if target else 0.0, spec)

    def _to_value(self, asset: Asset | str, value: float,
                  spec: tuple[float | None, float | None] | None) -> int | None:
        # Hold ``value`` currency of the asset (0: flat, with no price needed).
        state = self._rb
        if type(asset) is not Asset:
            asset = state.resolve(asset)
        if value == 0:
            return state.to_target(asset, 0.0, spec)
        return state.to_target(asset, value / state.price_now(asset), spec)

    #: Batch form of :meth:`order_target_percent`: one target weight per asset (see
    #: :func:`rustybt_ray.engine.rebalance.order_target_percents`).
    order_target_percents = _order_target_percents

    def get_open_orders(self, asset: Asset | None = None) -> dict[Asset, list[Order]] | list[Order]:
        """Open orders: a dict by asset, or the list for one asset."""
        state = self._rb
        orders = state.book.open_orders(state.bundle.calendar, None if asset is None else int(asset))
        if asset is not None:
            return orders
        out: dict[Asset, list[Order]] = {}
        for o in orders:
            out.setdefault(o.asset, []).append(o)
        return out

    def get_order(self, order_id: int) -> Order | None:
        """The order with this id, open, filled or cancelled (its ``status`` says which), or None if never placed."""
        state = self._rb
        return state.book.order(order_id, state.bundle.calendar, state.ledger)

    def cancel_order(self, order_param: int | Order) -> None:
        """Cancel an open order (by id or :class:`Order`)."""
        state = self._rb
        state.book.cancel(order_param.id if isinstance(order_param, Order) else int(order_param))
        state.pv_t = -2

    # -- bookkeeping and set-up -----------------------------------------------------

    def record(self, **values: Any) -> None:
        """Record named values at this bar; they become columns of ``result.bars``.

        A value is kept until the name is recorded again (zipline's carry-forward);
        a recorded NaN or None is recorded as such, not replaced by the previous value.
        """
        state = self._rb
        i = state.data._t + state.btd - state.i0
        rec = state.recorded
        for name, value in values.items():
            col = rec.get(name)
            if col is None:
                col = rec[name] = np.full(state.i1 - state.i0, np.nan)
                state.recorded_at[name] = np.zeros(state.i1 - state.i0, dtype=bool)
            try:
                col[i] = value
            except (TypeError, ValueError):
                if col.dtype != object:
                    col = rec[name] = col.astype(object)
                col[i] = value
            state.recorded_at[name][i] = True

    def symbol(self, symbol_str: str) -> Asset:
        """The asset with this symbol in the run's bundle."""
        return self._rb.bundle.symbol(symbol_str)

    def symbols(self, *symbol_strs: str) -> list[Asset]:
        """Assets for several symbols."""
        bundle = self._rb.bundle
        return [bundle.symbol(s) for s in symbol_strs]

    def schedule_function(self, func: Callable[..., Any], date_rule: DateRule | None = None,
                          time_rule: TimeRule | None = None, half_days: bool = True,
                          calendar: Any = None) -> None:
        """Run ``func`` on the bars picked by ``date_rule`` and ``time_rule`` (before ``handle_data``).

        ``func`` is called as ``func(context, data)`` like zipline (``context`` is this
        algorithm), or ``func(data)`` if it takes one argument (a bound method
        ``def rebalance(self, data)``). Call it from ``initialize``. ``half_days=False``
        skips the early-close sessions of intraday bundles (ignored on daily ones; see
        :mod:`rustybt_ray.engine.schedule`).
        """
        if self._rb.started:
            raise StrategyError("schedule_function must be called from initialize(), before the first bar")
        nargs = _positional_arity(func)
        call = func if nargs == 1 else (lambda data, _f=func: _f(self, data))
        self._rb.scheduled.append(
            Scheduled(call, date_rule or date_rules.every_day(), time_rule or time_rules.market_open(), half_days)
        )

    def set_commission(self, model: CommissionModel | None = None, *, us_equities: CommissionModel | None = None,
                       us_futures: Any = None) -> None:
        """Use ``model`` (or zipline's ``us_equities=``) for every later fill."""
        chosen = us_equities or model
        if not isinstance(chosen, CommissionModel):
            raise StrategyError(f"set_commission needs a commission model such as PerShare(0.001), got {chosen!r}")
        self._rb.ledger.commission = chosen

    def set_slippage(self, model: SlippageModel | None = None, *, us_equities: SlippageModel | None = None,
                     us_futures: Any = None) -> None:
        """Use ``model`` (or zipline's ``us_equities=``) for every later fill."""
        chosen = us_equities or model
        if not isinstance(chosen, SlippageModel):
            raise StrategyError(
                f"set_slippage needs a slippage model such as FixedBasisPointsSlippage(5), got {chosen!r}"
            )
        self._rb.ledger.slippage = chosen

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> np.ndarray:
        """A derived array shared across the trials this process runs (computed once per bundle version).

        Use it for data that depends on the bundle and a parameter but not on the
        trial's own state, e.g. ``self.cached(("sma", self.fast), lambda:
        rolling_mean(self.bundle.close, self.fast))``. ``key`` must capture every input
        of ``compute`` besides the bundle. The array is read-only. In a worker pool the
        cache is the worker's; in a plain run it is a process-wide one.
        """
        state = self._rb
        return state.cache.get_or_compute((state.bundle.version, key), compute)

    @property
    def portfolio(self) -> Portfolio:
        """Cash, positions and value at the current bar."""
        state = self._rb
        t = max(state.data._t, 0)
        ledger = state.ledger
        assets = state.assets
        prices = state.price[t]
        # A wide ledger's positions are an array: read them as floats, as a list ledger's are.
        pos = ledger.position_list()
        held = [i for i, q in enumerate(pos) if q]
        positions = Positions(
            (assets[i], Position(assets[i], pos[i], ledger.cost[i], float(prices[i]))) for i in held
        )
        value = float(sum(pos[i] * float(prices[i]) for i in held))
        return Portfolio(ledger.cash, positions, value, ledger.cash + value, state.capital)

    @property
    def account(self) -> Portfolio:
        """Alias of :attr:`portfolio` for code written against zipline's ``context.account``."""
        return self.portfolio

    def get_datetime(self, tz: Any = None) -> Any:
        """The current bar's timestamp as a ``pandas.Timestamp`` (naive, as the bundle stores it)."""
        import pandas as pd

        state = self._rb
        ts = pd.Timestamp(state.bundle.calendar[max(state.data._t, 0)])
        return ts.tz_localize(tz) if tz is not None else ts


def _finite(what: str, x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise OrderError(f"order {what} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise OrderError(f"order {what} must be finite, got {x!r} (a NaN signal? check your indicator's warm-up)")
    return v


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
