"""The ledger: cash and positions over all assets, held as arrays, and the fill core.

``Ledger.execute`` takes a batch of orders for one bar (asset columns, signed share
amounts, reference prices) and books them with slippage and commission in NumPy.
The event-driven engine feeds it the open orders of a bar; a vectorized front end
(target weights per bar) can feed it the differences between targets and holdings.
Nothing here knows about strategies, calendars or Ray.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from rustybt_ray.engine.costs import (
    _EPOCH,
    CommissionModel,
    FixedBasisPointsSlippage,
    NoCommission,
    NoSlippage,
    PerShare,
    SlippageModel,
)
from rustybt_ray.engine.shares import round_fractional, round_fractional_array

#: From this many assets on, a ledger keeps its positions as one float64 array (else a list):
#: a wide universe books whole batches per bar, where list <-> array conversions dominate.
#: Read when a ledger is made; tests patch it to run one strategy both ways.
ARRAY_POSITIONS_FROM = 65


@dataclass(frozen=True)
class Transactions:
    """Every fill of a run, as parallel arrays in execution order."""

    bar: np.ndarray  #: bar index (into the bundle calendar) of the fill
    asset: np.ndarray  #: asset column
    amount: np.ndarray  #: signed shares (+ buy, - sell)
    price: np.ndarray  #: execution price after slippage
    commission: np.ndarray  #: commission charged
    order_id: np.ndarray  #: id of the order filled (-1 for fills without an order)

    def __len__(self) -> int:
        return int(self.bar.shape[0])


class Ledger:
    """Cash, positions (shares, signed) and average cost per asset, with a fill log.

    Long and short positions are both allowed; a short sale credits cash. Cost basis
    follows zipline: adding to a position averages the price, reducing keeps it,
    crossing zero restarts it at the fill price (commissions are not folded in).

    Positions are kept as a plain list indexed by asset column up to
    :data:`ARRAY_POSITIONS_FROM` assets: the event-driven path touches a few assets per
    bar, where list access is several times cheaper than NumPy scalar access. Wider
    ledgers keep them as one float64 array (``pos`` is then an ndarray), which
    :meth:`execute` updates in place. Both forms hold the same numbers: every update is
    the same float operation. :attr:`positions` gives them as an array. The fill paths
    move cash and shares and log the fill; cost bases are replayed from the log when read.
    """

    __slots__ = ("cash", "pos", "_cost", "_cost_pos", "_cost_n", "_commission", "_slippage", "_kern", "_kern_epoch",
                 "_tx", "_snap_bar", "_snap_cash", "_snap_pos", "fractional", "volume_limited", "wide", "_rec")

    def __init__(
        self, n_assets: int, capital_base: float, commission: CommissionModel, slippage: SlippageModel,
        fractional: bool = False,
    ) -> None:
        #: positions are kept on the fractional-share grid (``shares.round_fractional``) after each fill
        self.fractional = bool(fractional)
        self.cash = float(capital_base)
        #: positions as one float64 array (a wide ledger) rather than a list
        self.wide = n_assets >= ARRAY_POSITIONS_FROM
        #: shares held per asset column (signed): a list, or a float64 array when ``wide``
        self.pos: list[float] | np.ndarray = np.zeros(n_assets) if self.wide else [0.0] * n_assets
        # The (n, 6) fill records of one batch, reused while batches fit (see execute).
        self._rec = np.empty((0, 6))
        # Average cost per share, derived from the fill log when read (see ``cost``): the
        # fill loops only move cash and shares. _cost_pos are the shares as of the
        # _cost_n fills replayed so far.
        self._cost: list[float] = [0.0] * n_assets
        self._cost_pos: list[float] = [0.0] * n_assets
        self._cost_n = 0
        self._kern_epoch = -1
        self.commission = commission
        self.slippage = slippage
        # The fill log as one flat float64 array of (bar, asset, amount, price, commission,
        # order id) records: appends are cheap and it becomes NumPy without copying rows.
        self._tx = array("d")
        self._snap_bar: list[int] = []
        self._snap_cash: list[float] = []
        self._snap_pos: list[list[float] | np.ndarray] = []

    @property
    def commission(self) -> CommissionModel:
        """The commission model of later fills."""
        return self._commission

    @commission.setter
    def commission(self, model: CommissionModel) -> None:
        self._commission = model
        self._kern_epoch = -1

    @property
    def slippage(self) -> SlippageModel:
        """The slippage model of later fills."""
        return self._slippage

    @slippage.setter
    def slippage(self, model: SlippageModel) -> None:
        self._slippage = model
        self._kern_epoch = -1
        #: the model caps fills by bar volume: the order book must take its general fill path
        self.volume_limited = getattr(model, "volume_limit", None) is not None

    @property
    def cost(self) -> list[float]:
        """Average cost per share of each open position (0 when flat), by asset column.

        Follows zipline: adding to a position averages the price, reducing keeps it,
        crossing zero restarts it at the fill price. Replayed from the fill log on read,
        fills not yet replayed only, in execution order: the same numbers as updating
        it at every fill, without the cost in the fill loop.
        """
        n = len(self._tx) // 6
        if self._cost_n < n:
            tx, cost, pos = self._tx, self._cost, self._cost_pos
            for k in range(self._cost_n * 6, n * 6, 6):
                a = int(tx[k + 1])
                q = tx[k + 2]
                price = tx[k + 3]
                old = pos[a]
                new = old + q
                if new == 0:
                    cost[a] = 0.0
                elif old == 0 or (old > 0) == (q > 0):
                    cost[a] = (cost[a] * old + price * q) / new
                elif (new > 0) == (q > 0):
                    cost[a] = price  # crossed zero: a new position at this price
                pos[a] = new
            self._cost_n = n
        return self._cost

    @property
    def positions(self) -> np.ndarray:
        """Shares held per asset, as a new array."""
        return np.array(self.pos, dtype=np.float64)

    @property
    def cost_basis(self) -> np.ndarray:
        """Average cost per share per asset, as a new array."""
        return np.array(self.cost)

    def execute_one(self, bar: int, asset: int, amount: float, ref_price: float, order_id: int = -1) -> bool:
        """Fill one order with plain float math (the fast path for a few orders per bar).

        Returns False, booking nothing, when ``ref_price`` is NaN (no bar) or ``amount`` is 0.
        """
        if ref_price != ref_price or amount == 0:
            return False
        price = self._slippage.fill_price_one(amount, ref_price)
        commission = self._commission.calculate_one(amount, price)
        self.book_fill(bar, asset, amount, price, commission, order_id)
        return True

    def fills_of(self, order_id: int) -> tuple[int, float] | None:
        """The asset and total signed shares of one order's fills, or None if it has none (reads the whole log)."""
        if not self._tx:
            return None
        m = np.frombuffer(self._tx, dtype=np.float64).reshape(-1, 6)
        mine = m[:, 5] == order_id
        out = (int(m[mine, 1][0]), float(m[mine, 2].sum())) if mine.any() else None
        del m, mine  # a live view would stop the log from growing
        return out

    def book_fill(self, bar: int, asset: int, amount: float, price: float, commission: float,
                  order_id: int = -1) -> None:
        """Book one fill whose execution price and commission are already known (the general fill path)."""
        if self.fractional:
            self.pos[asset] = round_fractional(self.pos[asset] + amount)
        else:
            self.pos[asset] += amount
        self.cash -= amount * price + commission
        self._tx.extend((bar, asset, amount, price, commission, order_id))

    def execute_orders(
        self, bar: int, assets: list[int], amounts: list[float], order_ids: list[int], ref_prices: list[float]
    ) -> list[int]:
        """Fill orders (non-zero amounts) one after the other; returns the ids of those that did not fill.

        ``ref_prices`` is the bar's reference price per asset column (a list); an order
        whose asset's price is NaN (no bar) does not fill. Books exactly what
        :meth:`execute_one` per order would, bit for bit; with the default cost models
        (and ``NoCommission``/``NoSlippage``) their arithmetic is inlined.
        """
        kernel = self._kern if self._kern_epoch == _EPOCH[0] else self._kernel()
        if kernel is None:
            execute_one = self.execute_one
            return [o for a, q, o in zip(assets, amounts, order_ids, strict=True)
                    if not execute_one(bar, a, q, ref_prices[a], o)]
        buy, sell, per_share, min_cost = kernel
        pos, cash = self.pos, self.cash
        unfilled: list[int] = []
        rec: list[float] = []
        for a, q, oid in zip(assets, amounts, order_ids, strict=True):
            ref = ref_prices[a]
            if ref != ref:
                unfilled.append(oid)
                continue
            # FixedBasisPointsSlippage.fill_price_one and PerShare.calculate_one, same float ops
            if q > 0:
                price = ref * buy
                c = q * per_share
            else:
                price = ref * sell
                c = -q * per_share
            if c < min_cost:
                c = min_cost
            pos[a] += q
            cash -= q * price + c
            rec += (bar, a, q, price, c, oid)
        self.cash = cash
        self._tx.fromlist(rec)  # twice as fast as extend() from a list
        return unfilled

    def _kernel(self) -> tuple[float, float, float, float] | None:
        # (buy price factor, sell price factor, commission per share, minimum commission) for
        # the built-in models whose one-fill math is a multiply; None means call the models.
        # Cached until a model is replaced or any cost model's attribute is set (_EPOCH).
        slip, comm = self._slippage, self._commission
        ts, tc = type(slip), type(comm)
        kern: tuple[float, float, float, float] | None = None
        if self.fractional:
            tc = None  # type: ignore[assignment]  # positions are re-rounded per fill: execute_one does it
        elif ts is FixedBasisPointsSlippage:
            k = slip.basis_points / 10_000.0  # type: ignore[attr-defined]
            buy, sell = 1.0 + k, 1.0 - k  # price * (1 + sign * k), as fill_price_one computes it
        elif ts is NoSlippage:
            buy = sell = 1.0
        else:
            tc = None  # type: ignore[assignment]
        if tc is PerShare:
            kern = (buy, sell, comm.cost, comm.min_trade_cost)  # type: ignore[attr-defined]
        elif tc is NoCommission:
            kern = (buy, sell, 0.0, 0.0)
        self._kern = kern
        self._kern_epoch = _EPOCH[0]
        return kern

    def execute(
        self,
        bar: int,
        assets: np.ndarray,
        amounts: np.ndarray,
        ref_price: np.ndarray,
        order_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fill a batch of orders in NumPy (the path for wide universes and vectorized front ends).

        An entry whose reference price is NaN (the asset has no bar) does not fill.
        Returns a boolean mask of the entries that filled. Equal to calling
        :meth:`execute_one` per entry, up to float rounding of the cash sum.
        """
        filled = ~np.isnan(ref_price) & (amounts != 0)
        k = int(np.count_nonzero(filled))
        if not k:
            return filled
        if k != filled.shape[0]:
            assets, amounts, ref_price = assets[filled], amounts[filled], ref_price[filled]
            order_ids = order_ids[filled] if order_ids is not None else None
        n = assets.shape[0]
        # Distinct assets unless some column is counted twice; bincount is a few times
        # cheaper than np.unique (no sort) at the batch sizes of a rebalance.
        if n > 1 and np.bincount(assets).max() > 1:
            # Several orders for one asset: book them in order, so each sees the one before.
            ids = order_ids.tolist() if order_ids is not None else [-1] * n
            for a, q, p, o in zip(assets.tolist(), amounts.tolist(), ref_price.tolist(), ids, strict=True):
                self.execute_one(bar, a, q, p, o)
            return filled
        price = self.slippage.fill_price(amounts, ref_price)
        commission = self.commission.calculate(amounts, price)
        if self.wide:
            pos_arr = self.pos
            pos_arr[assets] += amounts  # type: ignore[index]
            if self.fractional:
                pos_arr[assets] = round_fractional_array(pos_arr[assets])  # type: ignore[index]
        else:
            pos_arr = np.array(self.pos)
            pos_arr[assets] += amounts
            if self.fractional:
                pos_arr[assets] = round_fractional_array(pos_arr[assets])
            self.pos = pos_arr.tolist()
        self.cash -= float(np.dot(amounts, price)) + float(commission.sum())
        rec = self._rec
        if rec.shape[0] < n:
            rec = self._rec = np.empty((max(n, 2 * rec.shape[0]), 6))
        rows = rec[:n]  # C-contiguous: the first n records of the buffer
        rows[:, 0] = bar
        rows[:, 1] = assets
        rows[:, 2] = amounts
        rows[:, 3] = price
        rows[:, 4] = commission
        rows[:, 5] = order_ids if order_ids is not None else -1
        self._tx.frombytes(rows.data.cast("B"))  # no bytes object in between
        return filled

    def snapshot(self, bar: int) -> None:
        """Remember cash and positions at the end of ``bar``'s fills (call once per bar with fills)."""
        if self._snap_bar and self._snap_bar[-1] == bar:
            self._snap_cash[-1] = self.cash
            self._snap_pos[-1] = self.pos.copy()
        else:
            self._snap_bar.append(bar)
            self._snap_cash.append(self.cash)
            self._snap_pos.append(self.pos.copy())

    def position_list(self) -> list[float]:
        """Shares per asset as a list of floats (a narrow ledger's own list: read it, do not change it)."""
        return self.pos.tolist() if self.wide else self.pos  # type: ignore[union-attr,return-value]

    @property
    def has_fills(self) -> bool:
        """Whether any fill was booked (a ledger without one held nothing at any bar)."""
        return bool(self._snap_bar) or bool(self._tx)

    def value(self, price_row: np.ndarray) -> float:
        """Portfolio value: cash plus positions marked at ``price_row`` (NaN prices count only where flat)."""
        pos = self.pos if self.wide else np.array(self.pos)
        held = pos != 0
        return self.cash + float(np.dot(pos[held], price_row[held]))

    def transactions(self) -> Transactions:
        """All fills so far, as arrays."""
        # Columns copied straight from a view of the log: no copy of the whole log first.
        # The view is dropped on return, so the log can grow again.
        m = np.frombuffer(self._tx, dtype=np.float64).reshape(-1, 6) if self._tx else np.empty((0, 6))
        out = Transactions(
            m[:, 0].astype(np.int64),
            m[:, 1].astype(np.int64),
            m[:, 2].copy(),
            m[:, 3].copy(),
            m[:, 4].copy(),
            m[:, 5].astype(np.int64),
        )
        del m
        return out

    def history(self, bars: np.ndarray, capital_base: float) -> tuple[np.ndarray, np.ndarray]:
        """Cash ``(n,)`` and positions ``(n, N)`` at the end of each of ``bars`` (ascending).

        Rebuilt from the snapshots taken at fill bars, so it equals the live ledger
        exactly, bar for bar.
        """
        n, n_assets = bars.shape[0], len(self.pos)
        if not self._snap_bar:
            return np.full(n, float(capital_base)), np.zeros((n, n_assets))
        # Only the snapshots from the one in force at bars[0] on are converted: a run
        # judged at checkpoints asks for one segment at a time (O(segment), not O(run)).
        first = max(0, bisect_right(self._snap_bar, int(bars[0])) - 1) if n else 0
        snap_bar = np.asarray(self._snap_bar[first:])
        which = np.searchsorted(snap_bar, bars, side="right") - 1
        before = [float(capital_base)] if first == 0 else [self._snap_cash[first - 1]]
        cash_tab = np.concatenate([before, np.asarray(self._snap_cash[first:])])
        pos_before = np.zeros((1, n_assets)) if first == 0 else np.asarray([self._snap_pos[first - 1]])
        pos_tab = np.vstack([pos_before, np.asarray(self._snap_pos[first:]).reshape(-1, n_assets)])
        return cash_tab[which + 1], pos_tab[which + 1]
