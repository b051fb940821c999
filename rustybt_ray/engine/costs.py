"""Commission and slippage models, applied to whole batches of fills at once.

Names and arguments follow zipline's ``zipline.finance.commission`` and
``zipline.finance.slippage`` so ported strategies keep their ``set_commission`` and
``set_slippage`` calls. Each model works on NumPy arrays of fills (one entry per
order), so the ledger core can serve the event-driven engine and a vectorized
front end alike.

Two hooks serve the event engine's general fill path (limit/stop orders, partial
fills, see ``orders.OrderBook``): ``SlippageModel.volume_limit`` (None: orders fill
whole) with ``fill_price_volume``, and ``CommissionModel.calculate_fill``, which
charges a per-order minimum once over an order's partial fills, as zipline does.
"""

from __future__ import annotations

import math

import numpy as np

from rustybt_ray.errors import StrategyError

#: Bumped whenever any cost model's attribute is set, so the ledger's inlined fill math
#: (``Ledger._kernel``) notices a model changed after it was read.
_EPOCH = [0]


class _CostModel:
    """Shared by the cost-model bases: a repr that shows the model's settings."""

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        _EPOCH[0] += 1

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class CommissionModel(_CostModel):
    """Base class: the commission charged for each fill."""

    def calculate(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Commission (>= 0) for fills of ``amount`` shares (signed) at ``price``."""
        raise NotImplementedError

    def calculate_one(self, amount: float, price: float) -> float:
        """Commission of one fill; built-in models override this with plain float math for speed."""
        return float(self.calculate(np.array([amount]), np.array([price]))[0])

    def calculate_fill(self, amount: float, price: float, filled_before: float, charged_before: float) -> float:
        """Commission of one fill of an order that already filled ``filled_before`` shares and paid ``charged_before``.

        The default charges each fill on its own (:meth:`calculate_one`); :class:`PerShare`
        charges its minimum once per order. For an order's first fill it equals
        :meth:`calculate_one`.
        """
        return self.calculate_one(amount, price)


class NoCommission(CommissionModel):
    """Trades cost nothing."""

    def calculate(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Zero for every fill."""
        return np.zeros(np.shape(amount))

    def calculate_one(self, amount: float, price: float) -> float:
        """Zero."""
        return 0.0


class PerShare(CommissionModel):
    """A cost per share traded, with a minimum per order (zipline's ``PerShare``).

    ``commission = max(min_trade_cost, |amount| * cost)`` for every filled order.
    """

    def __init__(self, cost: float = 0.001, min_trade_cost: float = 0.0) -> None:
        _non_negative("PerShare cost", cost)
        _non_negative("PerShare min_trade_cost", min_trade_cost)
        self.cost = float(cost)
        self.min_trade_cost = float(min_trade_cost)

    def calculate(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """``max(min_trade_cost, |amount| * cost)`` per fill (zero for an empty fill)."""
        raw = np.abs(amount) * self.cost
        return np.where(amount != 0, np.maximum(raw, self.min_trade_cost), 0.0)

    def calculate_one(self, amount: float, price: float) -> float:
        """``max(min_trade_cost, |amount| * cost)``."""
        if amount == 0:
            return 0.0
        raw = abs(amount) * self.cost
        return raw if raw > self.min_trade_cost else self.min_trade_cost

    def calculate_fill(self, amount: float, price: float, filled_before: float, charged_before: float) -> float:
        """zipline's rule over partial fills: the order pays ``max(min_trade_cost, |filled| * cost)`` in all.

        So a later fill pays only what brings the order's total to that amount (0
        while the per-share total is still under the minimum).
        """
        if filled_before == 0 or self.min_trade_cost == 0:
            return self.calculate_one(amount, price)
        total = (abs(filled_before) + abs(amount)) * self.cost
        return total - charged_before if total > self.min_trade_cost else 0.0


class PerDollar(CommissionModel):
    """A fraction of the traded value (zipline's ``PerDollar``): ``|amount| * price * cost``."""

    def __init__(self, cost: float = 0.0015) -> None:
        _non_negative("PerDollar cost", cost)
        self.cost = float(cost)

    def calculate(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """``|amount * price| * cost`` per fill."""
        return np.abs(amount * price) * self.cost

    def calculate_one(self, amount: float, price: float) -> float:
        """``|amount * price| * cost``."""
        return abs(amount * price) * self.cost


class BasisPoints(PerDollar):
    """A commission in basis points of traded value: ``BasisPoints(5)`` is 0.05%."""

    def __init__(self, bps: float = 5.0) -> None:
        _non_negative("BasisPoints bps", bps)
        super().__init__(cost=bps / 10_000.0)
        self.bps = float(bps)

    def __repr__(self) -> str:
        return f"BasisPoints(bps={self.bps!r})"


class SlippageModel(_CostModel):
    """Base class: the price a fill gets, given the bar's reference price.

    ``volume_limit`` (a class attribute, None here) is the share of a bar's volume an
    asset's orders may fill per bar; a model that sets it gets the bar's volume
    through :meth:`fill_price_volume` and its orders may fill over several bars.
    """

    #: Fraction of a bar's volume the orders of one asset may fill in that bar (None: no cap).
    volume_limit: float | None = None

    def fill_price(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Execution price for fills of signed ``amount`` against reference ``price``."""
        raise NotImplementedError

    def fill_price_one(self, amount: float, price: float) -> float:
        """Execution price of one fill; built-in models override this with plain float math."""
        return float(self.fill_price(np.array([amount]), np.array([price]))[0])

    def fill_price_volume(self, amount: float, price: float, volume: float) -> float:
        """Execution price of one fill of ``amount`` shares in a bar that traded ``volume``; ignores it by default."""
        return self.fill_price_one(amount, price)


class NoSlippage(SlippageModel):
    """Fills at the reference price."""

    def fill_price(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """The reference price unchanged."""
        return price

    def fill_price_one(self, amount: float, price: float) -> float:
        """The reference price unchanged."""
        return price


class FixedBasisPointsSlippage(SlippageModel):
    """Buys pay, and sells receive, the reference price moved by ``basis_points`` against the trader.

    ``price * (1 + sign(amount) * basis_points / 10_000)``. Unlike zipline, there is no
    volume cap: orders fill whole at the next bar, which keeps fills reproducible
    across data vendors that report volume differently.
    """

    def __init__(self, basis_points: float = 5.0) -> None:
        _non_negative("FixedBasisPointsSlippage basis_points", basis_points)
        self.basis_points = float(basis_points)

    def fill_price(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Reference price moved against the trade by the fixed basis points."""
        return price * (1.0 + np.sign(amount) * (self.basis_points / 10_000.0))

    def fill_price_one(self, amount: float, price: float) -> float:
        """Reference price moved against the trade by the fixed basis points."""
        sign = 1.0 if amount > 0 else (-1.0 if amount < 0 else 0.0)
        return price * (1.0 + sign * (self.basis_points / 10_000.0))


class VolumeShareSlippage(SlippageModel):
    """zipline's ``VolumeShareSlippage``: fills capped by the bar's volume, the price moved by the share taken.

    Per bar, the orders of one asset fill at most ``volume_limit * volume`` shares in
    all (rounded down to whole shares, or to the fractional grid with
    ``fractional_shares=True``); what is left stays open for the next bars. A bar with
    no volume fills nothing. A fill of ``q`` shares pays
    ``price + (q / volume) ** 2 * price_impact * price`` (a buy; a sell receives the
    price moved down by as much), ``q / volume`` capped at ``volume_limit``, as zipline
    computes it. The reference ``price`` is the fill rule's (the next bar's open with
    ``fill_price='open'``, or a limit/stop order's price). Only the event engine
    applies it: the vectorized engine refuses it.
    """

    def __init__(self, volume_limit: float = 0.025, price_impact: float = 0.1) -> None:
        if not (isinstance(volume_limit, (int, float)) and 0 < volume_limit <= 1):
            raise StrategyError(
                f"VolumeShareSlippage volume_limit must be a fraction in (0, 1] of the bar's volume, got {volume_limit!r}"
            )
        _non_negative("VolumeShareSlippage price_impact", price_impact)
        self.volume_limit = float(volume_limit)
        self.price_impact = float(price_impact)

    def fill_price(self, amount: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Refused: the impact needs each bar's volume (the event engine calls :meth:`fill_price_volume`)."""
        raise StrategyError(
            "VolumeShareSlippage needs each bar's volume: only the event engine (run_algorithm) applies it; "
            "use FixedBasisPointsSlippage or NoSlippage here"
        )

    def fill_price_one(self, amount: float, price: float) -> float:
        """Refused, as :meth:`fill_price`."""
        return float(self.fill_price(np.array([amount]), np.array([price]))[0])

    def fill_price_volume(self, amount: float, price: float, volume: float) -> float:
        """``price + (|amount| / volume) ** 2 * price_impact * price`` against the trade (share capped at the limit)."""
        share = min(abs(amount) / volume, self.volume_limit)
        return price + share * share * math.copysign(self.price_impact, amount) * price


def _non_negative(what: str, value: float) -> None:
    if not np.isfinite(value) or value < 0:
        raise StrategyError(f"{what} must be a finite number >= 0, got {value!r}")


#: Defaults, as zipline's for US equities (without zipline's volume cap).
def default_commission() -> CommissionModel:
    """``PerShare(cost=0.001, min_trade_cost=0.0)``: a tenth of a cent per share."""
    return PerShare(0.001, 0.0)


def default_slippage() -> SlippageModel:
    """``FixedBasisPointsSlippage(basis_points=5.0)``."""
    return FixedBasisPointsSlippage(5.0)
