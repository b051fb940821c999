"""``RunState``: everything one backtest keeps besides the strategy's own attributes.

The engine hangs one ``RunState`` on the strategy object under the single attribute
``_rb`` (set with ``object.__setattr__``, so strategies that guard their attributes
still run), instead of many ``_rb_*`` attributes: the user's namespace gets one
reserved name, and the order paths (``algorithm.py``, ``rebalance.py``) share the
per-bar sizing view through this object rather than through each other. The class
has slots: its fields are read several times per order in the hot path.

The per-bar sizing view (``prow``, ``held``, ``pv``) is valid while ``pv_t`` equals
the clock; a fill or a cancel sets ``pv_t = -2`` so that the next sizing call
rebuilds it with :meth:`RunState.refresh`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rustybt_ray.data.bundle import Asset, Bundle
from rustybt_ray.engine.array_cache import ArrayCache
from rustybt_ray.engine.bar_data import BarData
from rustybt_ray.engine.ledger import Ledger
from rustybt_ray.engine.orders import OrderBook
from rustybt_ray.engine.rows import row_lists
from rustybt_ray.engine.shares import share_rounder
from rustybt_ray.errors import OrderError

if TYPE_CHECKING:
    from rustybt_ray.engine.schedule import Scheduled

_mul = operator.mul

#: Up to this many assets, order sizing runs on plain Python floats (else NumPy).
LIST_SIZING_MAX_ASSETS = 64


@dataclass(slots=True, eq=False)
class RunState:
    """The state of one run: market view, ledger, order book, the per-bar sizing view and the run's bookkeeping."""

    #: the strategy object while the run lasts (see :meth:`detach`)
    algo: Any
    bundle: Bundle
    ledger: Ledger
    i0: int
    i1: int
    capital: float
    cache: ArrayCache
    data: BarData = field(init=False)
    book: OrderBook = field(init=False)
    price: np.ndarray = field(init=False)
    #: price rows as lists with NaN as 0.0 (shared per process), or None for large bundles
    marks: list[list[float]] | None = field(init=False)
    #: the fill's reference price rows as lists (set when the loop starts), or None
    fill_rows: list[list[float]] | None = None
    assets: tuple[Asset, ...] = field(init=False)
    cols: range = field(init=False)
    #: order sizing on plain floats (few assets) rather than NumPy
    lists: bool = field(init=False)
    recorded: dict[str, np.ndarray] = field(default_factory=dict)
    scheduled: list[Scheduled] = field(default_factory=list)
    #: 1 while before_trading_start runs (the clock shows the previous bar)
    btd: int = 0
    pv: float = 0.0
    pv_t: int = -2
    prow: list[float] = field(default_factory=list)
    held: list[float] = field(default_factory=list)
    #: the run's pinned parameters and the pinned names initialize() assigned to
    pinned: dict[str, Any] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)
    #: the parameter values the run used (known after initialize)
    params: dict[str, Any] = field(default_factory=dict)
    #: the bars at which each recorded name was recorded (so a recorded NaN is kept, not carried over)
    recorded_at: dict[str, np.ndarray] = field(default_factory=dict)
    #: fractional shares (``shares.round_fractional``) rather than whole shares; set from the ledger
    fractional: bool = field(init=False)
    #: the run's share rule (``shares.share_rounder``)
    share_rule: Callable[[float], float] = field(init=False)

    def __post_init__(self) -> None:
        b = self.bundle
        self.data = BarData(b, self.cache)  # '1d' aggregates go in the run's cache, not the process-wide one
        # Closed until the first bar: the one guard against orders from initialize().
        self.book = OrderBook(b.assets, accepting=False, bundle=b)
        self.fractional = self.ledger.fractional
        self.share_rule = share_rounder(self.fractional)
        self.price = b.price
        self.marks = row_lists(b, "price", nan_as_zero=True)
        self.assets = b.assets
        self.cols = range(len(b.assets))
        self.lists = len(b.assets) <= LIST_SIZING_MAX_ASSETS
        self.pv = self.capital

    def detach(self) -> Any:
        """The strategy object, which the state stops referring to: call once the run is over.

        The strategy holds its state (``_rb``); a reference back would make a cycle that
        only the cyclic garbage collector frees, so every finished trial of a sweep would
        linger with its ledger and book until a collection (measured: 4% slower trials).
        """
        algo, self.algo = self.algo, None
        return algo

    @property
    def started(self) -> bool:
        """Whether the first bar has begun (orders are accepted, ``schedule_function`` is not)."""
        return self.book.accepting

    def resolve(self, asset: Any) -> Asset:
        """The :class:`Asset` for a symbol string or a column number; an :class:`OrderError` otherwise."""
        if isinstance(asset, str):
            return self.bundle.symbol(asset)
        if isinstance(asset, (int, np.integer)) and 0 <= int(asset) < len(self.assets):
            return self.assets[int(asset)]
        raise OrderError(f"cannot order {asset!r}: pass an Asset (self.symbol('AAPL')) or a symbol string")

    def price_now(self, asset: Asset) -> float:
        """The asset's price at the current bar, for sizing an order; an :class:`OrderError` if it has none.

        In ``initialize`` the refusal of orders is the error to report, whatever the price.
        """
        t = self.data._t
        price = float(self.price[t, asset]) if t >= 0 else math.nan
        if not price > 0:
            self.book.check_accepting()
            raise OrderError(
                f"{asset.symbol} has no price at {self.bundle.calendar[max(t, 0)]!s:.19} "
                f"(first bar {asset.start_date!s:.10}); check data.can_trade(asset) before ordering it"
            )
        return price

    def refresh(self) -> None:
        """Rebuild the per-bar sizing view: prices, held-or-ordered shares and the portfolio value, in floats."""
        t = self.data._t
        ledger = self.ledger
        book = self.book
        if t < 0:
            self.prow = [math.nan] * len(self.assets)
            self.pv = ledger.cash
        elif self.lists:
            # Marks: the bundle's price rows as lists with NaN (no price yet) as 0.0, shared
            # by the process's trials (rows.py), or this row converted. A flat asset adds
            # nothing either way; with a NaN mark the flat assets are skipped instead.
            # rebalance.order_target_percents computes the same.
            rows = self.marks
            self.prow = prow = rows[t] if rows is not None else self.price[t].tolist()
            pv = ledger.cash + sum(map(_mul, ledger.pos, prow))
            self.pv = pv if pv == pv else ledger.cash + sum([q * p for q, p in zip(ledger.pos, prow) if q])
        else:
            row = self.price[t]
            self.prow = row.tolist()
            self.pv = ledger.value(row)
        pos = ledger.position_list()  # floats: the per-asset order paths index it
        self.held = [q + o for q, o in zip(pos, book.open_amounts())] if book._ids else pos.copy()
        self.pv_t = t

    def refresh_wide(self) -> None:
        """:meth:`refresh` for a wide ledger at a bar ``t >= 0``, as arrays: the same numbers
        (``ledger.value`` for the value, held = positions + open amounts, the same float
        additions) without turning the ledger's arrays into lists. ``prow`` is the bundle's
        read-only price row."""
        t = self.data._t
        ledger, book = self.ledger, self.book
        row = self.price[t]
        self.prow = row  # type: ignore[assignment]
        self.pv = ledger.value(row)
        pos: np.ndarray = ledger.pos  # type: ignore[assignment]
        self.held = pos + np.array(book.open_amounts()) if book._ids else pos.copy()  # type: ignore[assignment]
        self.pv_t = t

    def portfolio_value(self) -> float:
        """The portfolio value at the current bar, as order sizing sees it."""
        if self.pv_t != self.data._t:
            self.refresh()
        return self.pv

    def to_target(self, asset: Asset, target_shares: float,
                  style: tuple[float | None, float | None] | None = None) -> int | None:
        """Order what it takes to hold ``target_shares`` of ``asset``, counting its open orders.

        A target of 0 orders exactly what is held and open (no rounding), so it flattens.
        """
        if self.pv_t != self.data._t:
            self.refresh()
        x = target_shares - self.held[asset]
        amount = -self.held[asset] if target_shares == 0 and self.fractional else self.share_rule(x)
        return self.place(asset, amount, style)

    def place(self, asset: Asset, amount: float, style: tuple[float | None, float | None] | None = None) -> int | None:
        """Queue an order for ``amount`` shares (already rounded; None for zero), keeping the sizing view current.

        ``style`` is ``(limit, stop)`` from ``orders.order_style``, or None for a market order.
        """
        if amount == 0:
            return None
        t = self.data._t
        if self.pv_t == t:
            if not self.prow[asset] > 0:
                self.price_now(asset)  # raises: the asset has no price yet
            self.held[asset] += amount
        elif t < 0 or not self.price[t, asset] > 0:  # t < 0: before_trading_start of the calendar's first bar
            self.price_now(asset)
        if style is None:
            return self.book.place(asset, amount, t)
        return self.book.place_styled(asset, amount, t, style[0], style[1])


class NoBarsYet:
    """The ``data`` of ``before_trading_start`` before the calendar's first bar: no bar has happened yet.

    ``history`` windows are all NaN (the bar data pads before the first bar),
    ``current`` is NaN in the shape the request would have, ``can_trade`` and
    ``is_stale`` are False; the field names are checked as usual. Everything else is
    the wrapped :class:`BarData`'s.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Any) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def history(self, *args: Any, **kwargs: Any) -> Any:
        """NaN, shaped (and indexed) as :meth:`BarData.history` would answer."""
        out = self._data.history(*args, **kwargs)  # checks the request; any value is replaced
        if isinstance(out, np.ndarray):
            return np.full(out.shape, np.nan)
        return out * np.nan

    @property
    def current_dt(self) -> Any:
        """No bar yet: NaT."""
        return np.datetime64("NaT", "ns")

    def current(self, assets: Any, fields: Any) -> Any:
        """NaN, shaped as :meth:`BarData.current` would answer."""
        shape = np.shape(self._data.current(assets, fields))  # checks the request; the values are not used
        return math.nan if shape == () else np.full(shape, np.nan)

    def can_trade(self, assets: Any) -> Any:
        """False: nothing can trade before the first bar."""
        return np.zeros(np.shape(self._data.can_trade(assets)), dtype=bool) if not isinstance(assets, int) else False

    def is_stale(self, assets: Any) -> Any:
        """False: nothing has traded yet."""
        return np.zeros(np.shape(self._data.is_stale(assets)), dtype=bool) if not isinstance(assets, int) else False


class HasRunState(Protocol):
    """What the order paths need of a strategy object: its run state (``TradingAlgorithm`` during a run)."""

    _rb: RunState
