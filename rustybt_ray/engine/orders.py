"""Open orders: kept as parallel lists (orders are sparse events) and filled in batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rustybt_ray.data.bundle import Asset
from rustybt_ray.engine.ledger import Ledger
from rustybt_ray.errors import OrderError


@dataclass(frozen=True)
class Order:
    """A snapshot of an order, as ``get_open_orders`` and ``get_order`` report it.

    ``amount`` is the signed number of shares still to fill; ``created`` the bar
    timestamp at which the strategy placed it.
    """

    id: int
    asset: Asset
    amount: float
    created: np.datetime64
    status: str = "open"

    @property
    def sid(self) -> int:
        """The asset's column (zipline's ``order.sid``)."""
        return int(self.asset)


#: Why an order from ``initialize`` is refused.
NO_ORDERS_IN_INITIALIZE = (
    "orders cannot be placed in initialize(): place them in handle_data, a scheduled function "
    "or before_trading_start"
)

#: Up to this many orders in a bar fill one by one in plain Python; more go through NumPy.
_SCALAR_FILLS = 32


class OrderBook:
    """The open market orders of a run, filled whole at the next bar the asset trades.

    Orders stay open across bars on which their asset has no bar (zipline's
    ``NeverCancel`` policy) until they fill or the strategy cancels them.

    ``accepting`` is False while the strategy's ``initialize`` runs: the book is the
    one gate every order passes, so refusing orders from ``initialize`` is done here,
    once, for every order path (:meth:`check_accepting`).
    """

    __slots__ = ("_ids", "_assets", "_amounts", "_created", "_next_id", "_n_assets", "_asset_objs", "accepting")

    def __init__(self, assets: tuple[Asset, ...], accepting: bool = True) -> None:
        self.accepting = accepting
        self._ids: list[int] = []
        self._assets: list[int] = []
        self._amounts: list[float] = []
        self._created: list[int] = []
        self._next_id = 1
        self._asset_objs = assets
        self._n_assets = len(assets)

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
        if self._ids:
            self._ids.extend(range(first, self._next_id))
            self._assets.extend(assets)
            self._amounts.extend(amounts)
            self._created.extend([bar] * len(assets))
        else:  # the usual case of a rebalance: the book is empty, it takes the lists over
            self._ids = list(range(first, self._next_id))
            self._assets = assets
            self._amounts = amounts
            self._created = [bar] * len(assets)
        return first

    def fill(self, bar: int, ledger: Ledger, ref_price_row: np.ndarray | list[float]) -> None:
        """Offer every open order to the ledger at ``ref_price_row``; keep those that could not fill.

        The row is the bar's reference price per asset column, an array or a list.
        """
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
            self._ids.clear()
            self._assets.clear()
            self._amounts.clear()
            self._created.clear()
            return
        keep = set(unfilled)
        idx = [i for i, oid in enumerate(self._ids) if oid in keep]
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
        for lst in (self._ids, self._assets, self._amounts, self._created):
            del lst[i]

    def open_orders(self, calendar: np.ndarray, asset: int | None = None) -> list[Order]:
        """Snapshots of the open orders, optionally of one asset only."""
        return [
            Order(oid, self._asset_objs[a], amt, calendar[c])
            for oid, a, amt, c in zip(self._ids, self._assets, self._amounts, self._created, strict=True)
            if asset is None or a == asset
        ]
