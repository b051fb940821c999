"""Wide universes (hundreds of assets): the array-backed ledger and the NumPy sizing path.

From ``ledger.ARRAY_POSITIONS_FROM`` assets on, the ledger keeps positions as one
array and ``order_target_percents`` sizes without leaving NumPy. These tests check
that path against an independent NumPy replay of the accounts (hand-written here,
sharing nothing with the engine but the bundle), and check that forcing the
thresholds both ways (module constants, patched) gives identical results.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rustybt_ray.engine.ledger as ledger_mod
import rustybt_ray.engine.rebalance as rebalance_mod
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine import (
    FixedBasisPointsSlippage,
    NoSlippage,
    PerShare,
    TradingAlgorithm,
    run_algorithm,
)

BPS, PER_SHARE, MIN_COST = 5.0, 0.005, 1.0
CAPITAL = 1_000_000.0


def wide_bundle(n_assets: int, n_bars: int, seed: int = 0, gaps: bool = True) -> Bundle:
    """Random walks; with ``gaps``, some assets list late and some bars are missing (NaN)."""
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (n_bars, n_assets)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, close.shape))
    high = np.fmax(open_, close) * (1.0 + rng.uniform(0, 0.01, close.shape))
    low = np.fmin(open_, close) * (1.0 - rng.uniform(0, 0.01, close.shape))
    block = np.stack([open_, high, low, close, np.full(close.shape, 1e6)])
    if gaps:
        late = rng.integers(0, n_bars // 2, n_assets) * (rng.random(n_assets) < 0.2)
        missing = rng.random(close.shape) < 0.03
        missing |= np.arange(n_bars)[:, None] < late[None, :]
        block[:, missing] = np.nan
    cal = np.busday_offset(np.datetime64("2020-01-02"), np.arange(n_bars), roll="forward").astype("datetime64[ns]")
    return Bundle(f"wide{n_assets}", "1d", cal, [f"W{i:03d}" for i in range(n_assets)], block)


class EqualWeight(TradingAlgorithm):
    """Every bar: ``1/n`` in each of the ``n`` assets with a bar, 0 elsewhere, in one call."""

    def initialize(self) -> None:
        """Costs of the reference replay."""
        self.set_commission(PerShare(PER_SHARE, MIN_COST))
        self.set_slippage(FixedBasisPointsSlippage(BPS))
        self.trades = ~np.isnan(self.bundle.close)

    def handle_data(self, data) -> None:
        """Rebalance to equal weight over the assets that trade this bar."""
        row = self.trades[data.bar_index]
        n = int(row.sum())
        if n:
            self.order_target_percents(np.where(row, 1.0 / n, 0.0))


def round_shares_ref(x: np.ndarray) -> np.ndarray:
    """The whole-share rule written as its definition: nearest integer within 1e-4, else toward zero."""
    r = np.round(x)
    return np.where(np.abs(x - r) < 1e-4, r, np.trunc(x)) + 0.0


def replay_equal_weight(b: Bundle) -> dict[str, np.ndarray]:
    """The equal-weight strategy's accounts, bar by bar, in plain NumPy (fills at the next open).

    Orders are a queue in placement order; one waits while its asset has no bar, and
    a new target counts it as on the way (a second order for the asset joins the queue).
    """
    n_bars, n = b.shape
    opens, price, trades = b.open, b.price, ~np.isnan(b.close)
    pos, cash = np.zeros(n), CAPITAL
    q_asset, q_amount = np.zeros(0, dtype=np.int64), np.zeros(0)
    k = BPS / 10_000.0
    fills: list[tuple[int, int, float, float, float]] = []
    equity, cash_at = np.empty(n_bars), np.empty(n_bars)
    for t in range(n_bars):
        can = ~np.isnan(opens[t, q_asset])
        a, q = q_asset[can], q_amount[can]
        px = opens[t, a] * np.where(q > 0, 1.0 + k, 1.0 - k)
        comm = np.maximum(np.abs(q) * PER_SHARE, MIN_COST)
        np.add.at(pos, a, q)
        cash -= float(np.dot(q, px)) + float(comm.sum())
        fills += zip([t] * len(a), a.tolist(), q.tolist(), px.tolist(), comm.tolist(), strict=True)
        q_asset, q_amount = q_asset[~can], q_amount[~can]
        row = trades[t]
        m = int(row.sum())
        held = pos != 0
        pv = cash + float(np.dot(pos[held], price[t, held]))
        if m:
            w = np.where(row, 1.0 / m, 0.0)
            on_the_way = np.bincount(q_asset, weights=q_amount, minlength=n)
            target = np.where(w != 0, w * pv / np.where(w != 0, price[t], 1.0), 0.0)
            new = round_shares_ref(target - (pos + on_the_way))
            nz = np.flatnonzero(new)
            q_asset, q_amount = np.r_[q_asset, nz], np.r_[q_amount, new[nz]]
        held = pos != 0
        equity[t] = cash + float(np.where(held, pos * np.where(held, price[t], 0.0), 0.0).sum())
        cash_at[t] = cash
    f = np.array(fills) if fills else np.empty((0, 5))
    return {"equity": equity, "cash": cash_at, "pos": pos, "bar": f[:, 0], "asset": f[:, 1],
            "amount": f[:, 2], "price": f[:, 3], "commission": f[:, 4]}


@pytest.mark.parametrize("n_assets", [200, 600])
def test_equal_weight_daily_matches_numpy_replay(n_assets):
    """The wide path books the fills of an independent replay; cash + holdings = equity every bar."""
    b = wide_bundle(n_assets, 40, seed=n_assets)
    res = run_algorithm(EqualWeight, b, capital_base=CAPITAL)
    ref = replay_equal_weight(b)
    tx = res.transactions
    assert tx.height == ref["amount"].shape[0] > 5 * n_assets  # most assets trade on most bars
    sym = np.array(b.symbols)
    np.testing.assert_array_equal(tx["symbol"].to_numpy(), sym[ref["asset"].astype(int)])
    np.testing.assert_array_equal(tx["amount"].to_numpy(), ref["amount"])
    np.testing.assert_allclose(tx["price"].to_numpy(), ref["price"], rtol=1e-15)
    np.testing.assert_allclose(tx["commission"].to_numpy(), ref["commission"], rtol=1e-15)
    np.testing.assert_array_equal(tx["date"].to_numpy(), b.calendar[ref["bar"].astype(int)])
    bars = res.bars
    np.testing.assert_allclose(bars["cash"].to_numpy(), ref["cash"], rtol=1e-12)
    np.testing.assert_allclose(bars["portfolio_value"].to_numpy(), ref["equity"], rtol=1e-12)
    # The accounting identity, from the result's own tables.
    marked = np.where(res.positions != 0, res.positions * np.where(res.positions != 0, b.price, 0.0), 0.0)
    np.testing.assert_allclose(bars["cash"].to_numpy() + marked.sum(axis=1), bars["portfolio_value"].to_numpy(),
                               rtol=1e-12)
    np.testing.assert_array_equal(res.positions[-1], ref["pos"])


class LimitFractionalMix(TradingAlgorithm):
    """Fractional limit buys below the close and limit sells above it, on a rotating third of the assets."""

    def initialize(self) -> None:
        """No slippage: a limit fill's price is the rule's price exactly."""
        self.set_commission(PerShare(PER_SHARE, MIN_COST))
        self.set_slippage(NoSlippage())

    def handle_data(self, data) -> None:
        """Place the bar's orders (amounts already on the fractional grid)."""
        t = data.bar_index
        close = self.bundle.close[t]
        for a in range(t % 3, len(self.assets), 3):
            c = float(close[a])
            if math.isnan(c):
                continue
            if (a + t) % 2:
                self.order(self.assets[a], 1.25 + (a % 4) * 0.5, limit_price=c * 0.995)
            else:
                self.order(self.assets[a], -0.75, limit_price=c * 1.004)


def replay_limits(b: Bundle) -> tuple[list[tuple[int, int, float, float, float]], np.ndarray, np.ndarray]:
    """The limit strategy's fills, cash and positions per bar: the module's limit rule in plain NumPy."""
    n_bars, n = b.shape
    book: list[tuple[int, float, float]] = []  # (asset, amount, limit), in placement order
    pos, cash = np.zeros(n), CAPITAL
    fills: list[tuple[int, int, float, float, float]] = []
    cash_at, pos_at = np.empty(n_bars), np.empty((n_bars, n))
    for t in range(n_bars):
        keep = []
        for a, q, lim in book:
            o, h, lo = b.open[t, a], b.high[t, a], b.low[t, a]
            if math.isnan(o) or not ((lo <= lim) if q > 0 else (h >= lim)):
                keep.append((a, q, lim))
                continue
            px = min(o, lim) if q > 0 else max(o, lim)
            comm = max(abs(q) * PER_SHARE, MIN_COST)
            pos[a] = round((pos[a] + q) * 1e6) / 1e6
            cash -= q * px + comm
            fills.append((t, a, q, px, comm))
        book = keep
        for a in range(t % 3, n, 3):
            c = float(b.close[t, a])
            if not math.isnan(c):
                book.append((a, 1.25 + (a % 4) * 0.5, c * 0.995) if (a + t) % 2 else (a, -0.75, c * 1.004))
        cash_at[t], pos_at[t] = cash, pos
    return fills, cash_at, pos_at


def test_limit_fractional_mix_matches_replay():
    """Limit orders with fractional shares on a wide ledger: the fills and accounts of a plain replay."""
    b = wide_bundle(150, 30, seed=7)
    res = run_algorithm(LimitFractionalMix, b, capital_base=CAPITAL, fractional_shares=True)
    fills, cash, pos = replay_limits(b)
    tx = res.transactions
    assert tx.height == len(fills) > 500
    f = np.array(fills)
    np.testing.assert_array_equal(tx["date"].to_numpy(), b.calendar[f[:, 0].astype(int)])
    np.testing.assert_array_equal(tx["symbol"].to_numpy(), np.array(b.symbols)[f[:, 1].astype(int)])
    np.testing.assert_array_equal(tx["amount"].to_numpy(), f[:, 2])
    np.testing.assert_array_equal(tx["price"].to_numpy(), f[:, 3])
    np.testing.assert_allclose(tx["commission"].to_numpy(), f[:, 4], rtol=1e-15)
    np.testing.assert_allclose(res.bars["cash"].to_numpy(), cash, rtol=1e-12)
    np.testing.assert_array_equal(res.positions, pos)
    held = pos != 0
    equity = cash + np.where(held, pos * np.where(held, b.price, 0.0), 0.0).sum(axis=1)
    np.testing.assert_allclose(res.bars["portfolio_value"].to_numpy(), equity, rtol=1e-12)
    assert (pos > 0).any() and (pos < 0).any()
    assert not np.array_equal(pos, np.round(pos))  # fractional holdings indeed


def force_paths(monkeypatch: pytest.MonkeyPatch, wide: bool) -> None:
    """Array ledger + NumPy sizing for every universe (wide), or lists + the float loop throughout."""
    monkeypatch.setattr(ledger_mod, "ARRAY_POSITIONS_FROM", 1 if wide else 10**9)
    monkeypatch.setattr(rebalance_mod, "_NUMPY_FROM", 1 if wide else 10**9)


#: the type of each Mixed run's ledger positions, to check which path a run took
LEDGER_KINDS: list[type] = []


class Mixed(TradingAlgorithm):
    """Batch rebalances, per-asset targets, market and limit orders and cancels, driven by the prices."""

    def initialize(self) -> None:
        """Which assets trade on which bar."""
        self.trades = ~np.isnan(self.bundle.close)
        LEDGER_KINDS.append(type(self._rb.ledger.pos))

    def handle_data(self, data) -> None:
        """A different kind of order per bar, chosen from the bar index."""
        t = data.bar_index
        row = self.trades[t]
        n = int(row.sum())
        kind = t % 4
        if kind in (0, 1) and n:
            w = np.where(row, (1.0 + (np.arange(len(row)) % 3)) / (2.0 * n), 0.0)
            self.order_target_percents(w)
            if kind == 1:  # a second call in the bar sees the first one's open orders
                self.order_target_percents(np.where(row, 0.5 / n, 0.0))
        elif kind == 2:
            for a in np.flatnonzero(row)[::5].tolist():
                self.order_target_percent(self.assets[a], 0.02)
                self.order(self.assets[a], 3, limit_price=float(self.bundle.close[t, a]) * 0.99)
        else:
            for o in list(self.get_open_orders().values())[:1]:
                for order in o[:2]:
                    self.cancel_order(order.id)
            pf = self.portfolio
            for a in list(pf.positions)[:7]:
                self.order_target(a, pf.positions[a].amount / 2)


SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SETTINGS
@given(seed=st.integers(0, 10_000), n_assets=st.integers(3, 90), n_bars=st.integers(5, 24),
       fractional=st.booleans(), fill_price=st.sampled_from(["open", "close"]), strategy=st.sampled_from(["mixed",
                                                                                                        "equal"]))
def test_wide_and_narrow_paths_identical(monkeypatch, seed, n_assets, n_bars, fractional, fill_price, strategy):
    """The array ledger with NumPy sizing and the list ledger with the float loop give the same run, bit for bit."""
    b = wide_bundle(n_assets, n_bars, seed=seed)
    cls = Mixed if strategy == "mixed" else EqualWeight
    LEDGER_KINDS.clear()
    runs = []
    for wide in (True, False):
        force_paths(monkeypatch, wide)
        runs.append(run_algorithm(cls, b, capital_base=CAPITAL, fill_price=fill_price, fractional_shares=fractional))
    a, c = runs
    if cls is Mixed:
        assert LEDGER_KINDS == [np.ndarray, list]
    assert a.bars.equals(c.bars)
    assert a.transactions.equals(c.transactions)
    np.testing.assert_array_equal(a.positions, c.positions)
    assert a.metrics == pytest.approx(c.metrics, nan_ok=True, rel=0, abs=0)


def test_wide_ledger_keeps_positions_as_an_array():
    """Above the threshold the ledger's positions are one float64 array; below it, a list."""
    from rustybt_ray.engine import Ledger

    wide = Ledger(ledger_mod.ARRAY_POSITIONS_FROM, 1000.0, PerShare(0.01, 1.0), NoSlippage())
    narrow = Ledger(ledger_mod.ARRAY_POSITIONS_FROM - 1, 1000.0, PerShare(0.01, 1.0), NoSlippage())
    assert isinstance(wide.pos, np.ndarray) and wide.pos.dtype == np.float64 and wide.wide
    assert isinstance(narrow.pos, list) and not narrow.wide
    # A batch with one asset twice books one fill after the other, as execute_one would.
    mask = wide.execute(3, np.array([5, 5, 7]), np.array([2.0, -3.0, 4.0]), np.array([10.0, 10.0, 20.0]),
                        np.array([1, 2, 3]))
    assert mask.tolist() == [True, True, True]
    assert wide.pos[5] == -1.0 and wide.pos[7] == 4.0
    assert wide.cash == 1000.0 - (2 * 10.0 + 1.0) - (-3 * 10.0 + 1.0) - (4 * 20.0 + 1.0)
    assert wide.transactions().order_id.tolist() == [1, 2, 3]


class BadWeights(TradingAlgorithm):
    """Orders weights the test chooses on the first bar."""

    weights = None

    def handle_data(self, data) -> None:
        """One batch call with the class's weights."""
        if data.bar_index == 0:
            self.order_target_percents(np.asarray(self.weights, dtype=np.float64))


def test_wide_path_errors_name_the_problem():
    """A NaN weight or a weight on an asset without a price is refused, naming the asset, on the wide path."""
    from rustybt_ray.errors import OrderError

    b = wide_bundle(120, 5, seed=3, gaps=False)
    w = np.full(120, 1.0 / 120)
    w[17] = np.nan
    with pytest.raises(OrderError, match="W017 must be finite"):
        run_algorithm(BadWeights, b, params={"weights": w.tolist()})
    block = b.values[:5].copy()
    block[:, :, 40] = np.nan  # W040 never trades
    nb = Bundle("wide_gap", "1d", b.calendar, b.symbols, block)
    with pytest.raises(OrderError, match="W040 has no price"):
        run_algorithm(BadWeights, nb, params={"weights": [1.0 / 120] * 120})
    with pytest.raises(OrderError, match="121 weights for 120 assets"):
        run_algorithm(BadWeights, b, params={"weights": [0.0] * 121})
