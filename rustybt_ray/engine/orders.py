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


#: Up to this many orders in a bar fill one by one in plain Python; more go through NumPy.
_SCALAR_FILLS = 32


class OrderBook:
    """The open market orders of a run, filled whole at the next bar the asset trades.

    Orders stay open across bars on which their asset has no bar (zipline's
    ``NeverCancel`` policy) until they fill or the strategy cancels them.
    """

    __slots__ = ("_ids", "_assets", "_amounts", "_created", "_next_id", "open_amount", "_asset_objs")

    def __init__(self, assets: tuple[Asset, ...]) -> None:
        self._ids: list[int] = []
        self._assets: list[int] = []
        self._amounts: list[float] = []
        self._created: list[int] = []
        self._next_id = 1
        self._asset_objs = assets
        #: net open shares per asset, so target orders account for what is already on the way
        self.open_amount = [0.0] * len(assets)

    def __len__(self) -> int:
        return len(self._ids)

    def place(self, asset: int, amount: float, bar: int) -> int:
        """Queue a market order; returns its id."""
        oid = self._next_id
        self._next_id = oid + 1
        self._ids.append(oid)
        self._assets.append(asset)
        self._amounts.append(amount)
        self._created.append(bar)
        self.open_amount[asset] += amount
        return oid

    def fill(self, bar: int, ledger: Ledger, ref_price_row: np.ndarray) -> None:
        """Offer every open order to the ledger at ``ref_price_row``; keep those that could not fill."""
        n = len(self._ids)
        if n <= _SCALAR_FILLS:
            row = ref_price_row.tolist() if ref_price_row.shape[0] <= 64 else ref_price_row.astype(object)
            execute_one = ledger.execute_one
            filled = [
                execute_one(bar, a, q, row[a], oid)
                for a, q, oid in zip(self._assets, self._amounts, self._ids, strict=True)
            ]
        else:
            assets = np.array(self._assets, dtype=np.int64)
            mask = ledger.execute(bar, assets, np.array(self._amounts), ref_price_row[assets],
                                  np.array(self._ids, dtype=np.int64))
            filled = mask.tolist()
        ledger.snapshot(bar)
        if all(filled):
            self._ids.clear()
            self._assets.clear()
            self._amounts.clear()
            self._created.clear()
            self.open_amount = [0.0] * len(self.open_amount)
            return
        keep = [i for i, f in enumerate(filled) if not f]
        self._ids = [self._ids[i] for i in keep]
        self._assets = [self._assets[i] for i in keep]
        self._amounts = [self._amounts[i] for i in keep]
        self._created = [self._created[i] for i in keep]
        self.open_amount = [0.0] * len(self.open_amount)
        for a, q in zip(self._assets, self._amounts, strict=True):
            self.open_amount[a] += q

    def cancel(self, order_id: int) -> None:
        """Cancel an open order by id; an unknown or already filled id is an :class:`OrderError`."""
        try:
            i = self._ids.index(order_id)
        except ValueError:
            raise OrderError(f"order {order_id} is not open (filled, cancelled or never placed)") from None
        self.open_amount[self._assets[i]] -= self._amounts[i]
        for lst in (self._ids, self._assets, self._amounts, self._created):
            del lst[i]

    def open_orders(self, calendar: np.ndarray, asset: int | None = None) -> list[Order]:
        """Snapshots of the open orders, optionally of one asset only."""
        return [
            Order(oid, self._asset_objs[a], amt, calendar[c])
            for oid, a, amt, c in zip(self._ids, self._assets, self._amounts, self._created, strict=True)
            if asset is None or a == asset
        ]
