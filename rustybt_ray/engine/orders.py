"""Orders: zipline's order styles, the snapshots strategies see, and the book of open orders.

Styles (``zipline.finance.execution``): :class:`MarketOrder`, :class:`LimitOrder`,
:class:`StopOrder`, :class:`StopLimitOrder`, passed as ``style=`` to every ``order*``
method, or as ``limit_price=`` / ``stop_price=``.

Fill rules. An order is offered to every bar after the one it was placed at (from
the same bar when placed in ``before_trading_start``) on which its asset has a bar,
until it has filled or is cancelled. With the bar's ``open, high, low``:

- **market**: fills at the bar's reference price (its open, or its close with
  ``fill_price='close'``);
- **limit buy** at ``L``: fills when ``low <= L``, at ``min(open, L)`` (a gap
  below the limit fills at the open); **limit sell**: when ``high >= L``, at
  ``max(open, L)``;
- **stop buy** at ``S``: triggers when ``high >= S`` and fills at ``max(open, S)``
  (a gap through the stop fills at the open); **stop sell**: when ``low <= S``, at
  ``min(open, S)``. A triggered stop order is a market order from then on (what a
  volume cap left of it fills at the reference price of later bars);
- **stop-limit** (``L``, ``S``): once the stop triggers (as a stop order) it is a
  limit order at ``L``. On the trigger bar it fills at the trigger price ``p``
  (``max(open, S)`` for a buy) if ``p`` is within the limit (``p <= L``); otherwise,
  if the stop triggered at the open (``open >= S``), the rest of the bar came after
  it, so it fills at ``L`` when the bar reached it (``low <= L``); otherwise (the
  stop was reached intrabar, after which the bar's path is unknown) it waits for the
  next bars, where the limit rule applies. Sells mirror this.

Limit and stop prices are used as given (zipline rounds them to a cent). The price
a rule gives is the fill's reference price: slippage and commission then apply as
for a market order, so with ``FixedBasisPointsSlippage`` a limit buy pays a little
more than its limit (use ``NoSlippage`` for fills exactly at the limit). With a
volume-capped model (``VolumeShareSlippage``) an order may fill over several bars;
:class:`Order` reports ``filled`` and ``open_amount``.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rustybt_ray.data.bundle import Asset
from rustybt_ray.engine.ledger import Ledger
from rustybt_ray.engine.shares import round_fractional, round_shares
from rustybt_ray.errors import OrderError

if TYPE_CHECKING:
    from rustybt_ray.data.bundle import Bundle


# -- styles ---------------------------------------------------------------------------


class ExecutionStyle:
    """Base class of the order styles (zipline's ``ExecutionStyle``): what limit and stop an order carries."""

    _limit: float | None = None
    _stop: float | None = None

    def __init__(self, exchange: Any = None) -> None:
        self.exchange = exchange

    @property
    def limit_price(self) -> float | None:
        """The limit price, or None."""
        return self._limit

    @property
    def stop_price(self) -> float | None:
        """The stop price, or None."""
        return self._stop

    def get_limit_price(self, is_buy: bool) -> float | None:
        """The limit price for a buy or a sell (zipline's API; the same for both here)."""
        return self._limit

    def get_stop_price(self, is_buy: bool) -> float | None:
        """The stop price for a buy or a sell (zipline's API; the same for both here)."""
        return self._stop

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("limit_price", self._limit), ("stop_price", self._stop)) if v is not None]
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (other._limit, other._stop) == (self._limit, self._stop)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._limit, self._stop))


class MarketOrder(ExecutionStyle):
    """Fill at the next bar's reference price (the default style)."""


class LimitOrder(ExecutionStyle):
    """Buy at ``limit_price`` or lower, sell at ``limit_price`` or higher (see the module's fill rules)."""

    def __init__(self, limit_price: float, asset: Any = None, exchange: Any = None) -> None:
        super().__init__(exchange)
        self._limit = order_price("limit_price", limit_price)
        self.asset = asset


class StopOrder(ExecutionStyle):
    """A market order once the price reaches ``stop_price`` (buy: rises to it; sell: falls to it)."""

    def __init__(self, stop_price: float, asset: Any = None, exchange: Any = None) -> None:
        super().__init__(exchange)
        self._stop = order_price("stop_price", stop_price)
        self.asset = asset


class StopLimitOrder(ExecutionStyle):
    """A limit order at ``limit_price`` once the price reaches ``stop_price``."""

    def __init__(self, limit_price: float, stop_price: float, asset: Any = None, exchange: Any = None) -> None:
        super().__init__(exchange)
        self._limit = order_price("limit_price", limit_price)
        self._stop = order_price("stop_price", stop_price)
        self.asset = asset


def order_price(what: str, value: Any) -> float:
    """``value`` as a limit or stop price: a finite number > 0, else an :class:`OrderError` naming ``what``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OrderError(f"{what} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise OrderError(f"{what} must be a finite number > 0, got {value!r}")
    return v


def order_style(limit_price: Any, stop_price: Any, style: Any) -> tuple[float | None, float | None] | None:
    """``(limit, stop)`` of an order's arguments, or None for a market order (zipline's argument rules).

    ``style`` and ``limit_price``/``stop_price`` together are refused, as in zipline.
    """
    if style is not None:
        if limit_price is not None or stop_price is not None:
            raise OrderError("pass either style= or limit_price=/stop_price=, not both "
                             "(e.g. style=StopLimitOrder(limit_price, stop_price))")
        if not isinstance(style, ExecutionStyle):
            raise OrderError(f"style must be MarketOrder(), LimitOrder(p), StopOrder(p) or StopLimitOrder(l, s), "
                             f"got {style!r}")
        limit, stop = style.limit_price, style.stop_price
    else:
        limit = None if limit_price is None else order_price("limit_price", limit_price)
        stop = None if stop_price is None else order_price("stop_price", stop_price)
    if limit is None and stop is None:
        return None
    return limit, stop


# -- snapshots ------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """A snapshot of an order, as ``get_open_orders`` and ``get_order`` report it (zipline's fields).

    ``status`` is ``"open"``, ``"filled"`` or ``"cancelled"`` (only ``get_order`` reports
    the last two).

    ``amount`` is the signed number of shares ordered, ``filled`` the signed shares
    filled so far (an order fills over several bars only under a volume cap),
    ``created`` the bar timestamp at which the strategy placed it; ``limit`` and
    ``stop`` its prices (None for a market order), ``stop_reached`` whether its stop
    has triggered.
    """

    id: int
    asset: Asset
    amount: float
    created: np.datetime64
    status: str = "open"
    filled: float = 0.0
    limit: float | None = None
    stop: float | None = None
    stop_reached: bool = False

    @property
    def sid(self) -> int:
        """The asset's column (zipline's ``order.sid``)."""
        return int(self.asset)

    @property
    def open_amount(self) -> float:
        """Signed shares still to fill."""
        return self.amount - self.filled

    @property
    def direction(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self.amount > 0 else -1


#: Why an order from ``initialize`` is refused.
NO_ORDERS_IN_INITIALIZE = (
    "orders cannot be placed in initialize(): place them in handle_data, a scheduled function "
    "or before_trading_start"
)

#: Up to this many orders in a bar fill one by one in plain Python; more go through NumPy.
_SCALAR_FILLS = 32


class _Spec:
    """The limit/stop of an open order and whether its stop has triggered."""

    __slots__ = ("limit", "stop", "stop_reached")

    def __init__(self, limit: float | None, stop: float | None) -> None:
        self.limit, self.stop, self.stop_reached = limit, stop, False

    def price(self, buy: bool, o: float, h: float, lo: float) -> float | None:
        """The reference price this bar gives the order (see the module's rules), or None: no fill now."""
        limit, stop = self.limit, self.stop
        if stop is not None and not self.stop_reached:
            if buy:
                if not h >= stop:
                    return None
                p = max(o, stop)
            else:
                if not lo <= stop:
                    return None
                p = min(o, stop)
            self.stop_reached = True
            if limit is None:
                return p
            if (p <= limit) if buy else (p >= limit):
                return p
            at_open = o >= stop if buy else o <= stop
            if at_open and ((lo <= limit) if buy else (h >= limit)):
                return limit
            return None
        if buy:
            return min(o, limit) if lo <= limit else None  # type: ignore[type-var, operator]
        return max(o, limit) if h >= limit else None  # type: ignore[type-var, operator]


class OrderBook:
    """The open orders of a run, offered to each bar on which their asset trades (see the module's fill rules).

    Orders are parallel lists in placement order (orders are sparse events). Market
    orders under a model without a volume cap fill whole at their next bar through
    the ledger's batch paths; limit/stop orders, and every order under a volume cap,
    go through :meth:`_fill_general`, one order at a time in placement order. Their
    limit/stop (``_spec``) and partial-fill state (``_filled``, ``_charged``) are
    kept by order id only for the orders that have them, so the market-order path
    pays nothing for them.

    Orders stay open across bars on which their asset has no bar (zipline's
    ``NeverCancel`` policy) until they fill or the strategy cancels them.

    ``accepting`` is False while the strategy's ``initialize`` runs: the book is the
    one gate every order passes, so refusing orders from ``initialize`` is done here,
    once, for every order path (:meth:`check_accepting`).
    """

    __slots__ = ("_ids", "_assets", "_amounts", "_created", "_next_id", "_n_assets", "_asset_objs", "accepting",
                 "_spec", "_filled", "_charged", "_bundle", "_created_at", "_closed_spec", "_cancelled")

    def __init__(self, assets: tuple[Asset, ...], accepting: bool = True, bundle: Bundle | None = None) -> None:
        self.accepting = accepting
        self._ids: list[int] = []
        self._assets: list[int] = []
        #: signed shares still to fill, per order
        self._amounts: list[float] = []
        self._created: list[int] = []
        self._next_id = 1
        self._asset_objs = assets
        self._n_assets = len(assets)
        self._spec: dict[int, _Spec] = {}
        self._filled: dict[int, float] = {}
        self._charged: dict[int, float] = {}
        #: the bars limit/stop rules and volume caps read (open, high, low, volume)
        self._bundle = bundle
        # What get_order reports about closed orders: every order's placement bar (by id - 1;
        # 8 bytes an order, an append on the hot path), the limit/stop of filled styled
        # orders, and cancelled orders as they were (cancels are rare: a dict is fine).
        self._created_at = array("q")
        self._closed_spec: dict[int, _Spec] = {}
        self._cancelled: dict[int, tuple[int, float, float, _Spec | None]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def open_amounts(self) -> list[float]:
        """Net open shares per asset column, so target orders account for what is already on the way."""
        out = [0.0] * self._n_assets
        for a, q in zip(self._assets, self._amounts, strict=True):
            out[a] += q
        return out

    def check_accepting(self) -> None:
        """Raise :class:`OrderError` if orders are not accepted yet (the strategy is in ``initialize``)."""
        if not self.accepting:
            raise OrderError(NO_ORDERS_IN_INITIALIZE)

    def place(self, asset: int, amount: float, bar: int) -> int:
        """Queue a market order; returns its id."""
        if not self.accepting:
            self.check_accepting()
        oid = self._next_id
        self._next_id = oid + 1
        self._ids.append(oid)
        self._assets.append(asset)
        self._amounts.append(amount)
        self._created.append(bar)
        self._created_at.append(bar)
        return oid

    def place_styled(self, asset: int, amount: float, bar: int, limit: float | None, stop: float | None) -> int:
        """Queue a limit, stop or stop-limit order (``limit``/``stop`` None where absent); returns its id."""
        if self._bundle is None:
            raise OrderError("this order book has no bars to check limit/stop prices against")
        oid = self.place(asset, amount, bar)
        if limit is not None or stop is not None:
            self._spec[oid] = _Spec(limit, stop)
        return oid

    def place_many(self, assets: list[int], amounts: list[float], bar: int) -> int:
        """Queue one market order per entry (amounts non-zero), in order; returns the first id.

        The ids are consecutive, as from :meth:`place` per entry. The book may keep the
        lists it is given: the caller must not use them afterwards.
        """
        if not self.accepting:
            self.check_accepting()
        first = self._next_id
        self._next_id = first + len(assets)
        created = [bar] * len(assets)
        self._created_at.extend(created)
        if self._ids:
            self._ids.extend(range(first, self._next_id))
            self._assets.extend(assets)
            self._amounts.extend(amounts)
            self._created.extend(created)
        else:  # the usual case of a rebalance: the book is empty, it takes the lists over
            self._ids = list(range(first, self._next_id))
            self._assets = assets
            self._amounts = amounts
            self._created = created
        return first

    def fill(self, bar: int, ledger: Ledger, ref_price_row: np.ndarray | list[float]) -> None:
        """Offer every open order to the ledger at ``bar``; keep those that did not fill (or only in part).

        ``ref_price_row`` is the bar's reference price per asset column (an array or
        a list): the price of market orders.
        """
        if self._spec or ledger.volume_limited:
            self._fill_general(bar, ledger, ref_price_row)
            return
        if len(self._ids) <= _SCALAR_FILLS:
            if type(ref_price_row) is list:
                row = ref_price_row
            else:
                row = ref_price_row.tolist() if self._n_assets <= 64 else ref_price_row.astype(object)
            unfilled = ledger.execute_orders(bar, self._assets, self._amounts, self._ids, row)
        else:
            ref_price_row = np.asarray(ref_price_row, dtype=np.float64)
            assets = np.array(self._assets, dtype=np.int64)
            ids = np.array(self._ids, dtype=np.int64)
            mask = ledger.execute(bar, assets, np.array(self._amounts), ref_price_row[assets], ids)
            unfilled = ids[~mask].tolist()
        ledger.snapshot(bar)
        if not unfilled:
            self._clear()
            return
        keep = set(unfilled)
        self._keep([i for i, oid in enumerate(self._ids) if oid in keep])

    def _fill_general(self, bar: int, ledger: Ledger, ref_price_row: np.ndarray | list[float]) -> None:
        """Fill orders one by one in placement order: limit/stop rules, volume caps, partial fills.

        Under a volume cap the orders of one asset share the bar's ``volume_limit *
        volume``, first placed first served; a fill is rounded down by the run's share
        rule (whole or fractional), and a bar with no volume fills nothing.
        """
        b = self._bundle
        slip, comm = ledger.slippage, ledger.commission
        cap = slip.volume_limit
        rnd = round_fractional if ledger.fractional else round_shares
        specs, filled, charged = self._spec, self._filled, self._charged
        used: dict[int, float] = {}
        amounts = self._amounts
        keep: list[int] = []
        for i, (oid, a, q) in enumerate(zip(self._ids, self._assets, amounts, strict=True)):
            spec = specs.get(oid) if specs else None
            if spec is None or (spec.stop_reached and spec.limit is None):
                ref = float(ref_price_row[a])
            else:
                o = float(b.open[bar, a])  # type: ignore[union-attr]
                ref = math.nan if o != o else spec.price(q > 0, o, float(b.high[bar, a]),  # type: ignore[union-attr]
                                                         float(b.low[bar, a]))  # type: ignore[union-attr]
            if ref is None or ref != ref:
                keep.append(i)
                continue
            if cap is not None:
                volume = float(b.volume[bar, a]) if b is not None else math.nan
                if not volume > 0:
                    keep.append(i)
                    continue
                n = rnd(min(cap * volume - used.get(a, 0.0), abs(q)))
                if not n > 0:
                    keep.append(i)
                    continue
                used[a] = used.get(a, 0.0) + n
                q_fill = n if q > 0 else -n
                price = slip.fill_price_volume(q_fill, ref, volume)
            else:
                q_fill = q
                price = slip.fill_price_one(q, ref)
            before = filled.get(oid, 0.0)
            c = comm.calculate_fill(q_fill, price, before, charged.get(oid, 0.0))
            ledger.book_fill(bar, a, q_fill, price, c, oid)
            rest = rnd(q - q_fill)
            if rest:
                amounts[i] = rest
                filled[oid] = before + q_fill
                charged[oid] = charged.get(oid, 0.0) + c
                keep.append(i)
            else:
                self._forget(oid)
        ledger.snapshot(bar)
        if len(keep) != len(self._ids):
            self._keep(keep)

    def _forget(self, oid: int) -> None:
        spec = self._spec.pop(oid, None)
        if spec is not None:
            self._closed_spec[oid] = spec
        self._filled.pop(oid, None)
        self._charged.pop(oid, None)

    def _clear(self) -> None:
        self._ids.clear()
        self._assets.clear()
        self._amounts.clear()
        self._created.clear()

    def _keep(self, idx: list[int]) -> None:
        if not idx:
            self._clear()
            return
        self._ids = [self._ids[i] for i in idx]
        self._assets = [self._assets[i] for i in idx]
        self._amounts = [self._amounts[i] for i in idx]
        self._created = [self._created[i] for i in idx]

    def cancel(self, order_id: int) -> None:
        """Cancel an open order by id; an unknown or already filled id is an :class:`OrderError`."""
        try:
            i = self._ids.index(order_id)
        except ValueError:
            raise OrderError(f"order {order_id} is not open (filled, cancelled or never placed)") from None
        done = self._filled.get(order_id, 0.0)
        self._cancelled[order_id] = (self._assets[i], self._amounts[i] + done, done, self._spec.get(order_id))
        for lst in (self._ids, self._assets, self._amounts, self._created):
            del lst[i]
        self._forget(order_id)
        self._closed_spec.pop(order_id, None)

    def order(self, order_id: int, calendar: np.ndarray, ledger: Ledger) -> Order | None:
        """The order with this id, open, filled or cancelled (zipline's ``get_order``); None if never placed.

        A filled order is rebuilt from the ledger's fills (its asset and shares), so this
        reads the fill log: O(fills) for a closed order, meant for occasional calls.
        """
        if not isinstance(order_id, (int, np.integer)) or not 1 <= order_id < self._next_id:
            return None
        oid = int(order_id)
        if oid in self._ids:
            i = self._ids.index(oid)
            return self._snapshot(oid, self._assets[i], self._amounts[i], self._created[i], calendar)
        created = calendar[self._created_at[oid - 1]]
        if oid in self._cancelled:
            a, amount, done, spec = self._cancelled[oid]
            return Order(oid, self._asset_objs[a], amount, created, "cancelled", done,
                         *((spec.limit, spec.stop, spec.stop_reached) if spec else ()))
        fills = ledger.fills_of(oid)
        if fills is None:
            return None
        a, shares = fills
        spec = self._closed_spec.get(oid)
        return Order(oid, self._asset_objs[a], shares, created, "filled", shares,
                     *((spec.limit, spec.stop, spec.stop_reached) if spec else ()))

    def _snapshot(self, oid: int, a: int, amt: float, c: int, calendar: np.ndarray) -> Order:
        spec = self._spec.get(oid)
        done = self._filled.get(oid, 0.0)
        return Order(oid, self._asset_objs[a], amt + done, calendar[c], filled=done,
                     limit=spec.limit if spec else None, stop=spec.stop if spec else None,
                     stop_reached=spec.stop_reached if spec else False)

    def open_orders(self, calendar: np.ndarray, asset: int | None = None) -> list[Order]:
        """Snapshots of the open orders, optionally of one asset only."""
        out = []
        for oid, a, amt, c in zip(self._ids, self._assets, self._amounts, self._created, strict=True):
            if asset is not None and a != asset:
                continue
            out.append(self._snapshot(oid, a, amt, c, calendar))
        return out
