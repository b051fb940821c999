"""Hypothesis property tests: no look-ahead, and the accounting identity with an independent replay."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustybt_ray.engine import FixedBasisPointsSlippage, PerShare, TradingAlgorithm, run_algorithm

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def price_paths(draw, min_bars: int = 4, max_bars: int = 24):
    """(open, close) ``(T, N)`` arrays: random walks, 1-4 assets, some bars missing (NaN)."""
    T = draw(st.integers(min_bars, max_bars))
    N = draw(st.integers(1, 4))
    step = st.floats(-0.08, 0.08, allow_nan=False, allow_infinity=False)
    rets = np.array(draw(st.lists(step, min_size=2 * T * N, max_size=2 * T * N))).reshape(2, T, N)
    base = np.array(draw(st.lists(st.floats(5.0, 200.0), min_size=N, max_size=N)))
    close = base * np.exp(np.cumsum(rets[0], axis=0))
    open_ = close * np.exp(rets[1] / 4)
    missing = np.array(draw(st.lists(st.booleans(), min_size=T * N, max_size=T * N))).reshape(T, N)
    # Keep NaN bars sparse-ish: only where the flag is set on a bar index not divisible by 3.
    missing &= (np.arange(T) % 3 != 0)[:, None]
    close[missing] = np.nan
    open_[missing] = np.nan
    return open_, close


def make_probe(sink: list, orders: list):
    """A strategy that logs everything it sees and trades on it, deterministically."""

    class Probe(TradingAlgorithm):
        lookback = 3

        def initialize(self) -> None:
            self.set_commission(PerShare(cost=0.01, min_trade_cost=0.5))
            self.set_slippage(FixedBasisPointsSlippage(7))

        def before_trading_start(self, data) -> None:
            sink.append(("btd", data.bar_index, data.history(self.assets, "close", 2, return_type="array").copy()))

        def handle_data(self, data) -> None:
            t = data.bar_index
            closes = data.history(self.assets, "close", self.lookback, return_type="array")
            both = data.history(self.assets, ["open", "close"], 2, return_type="array")
            price = data.current(self.assets, "price")
            pf = self.portfolio
            sink.append(("hd", t, closes.copy(), both.copy(), np.array(price), pf.cash, pf.portfolio_value,
                         tuple(sorted((int(a), p.amount) for a, p in pf.positions.items()))))
            for a in self.assets:
                if not data.can_trade(a):
                    continue
                last = float(closes[-1, a])
                code = int(last * 1000) % 5
                if code == 0:
                    oid = self.order(a, (int(last * 100) % 21) - 10)
                elif code == 1:
                    oid = self.order_target_percent(a, ((int(last * 10_000) % 9) - 4) / 10)
                elif code == 2:
                    oid = self.order_target(a, 0)
                elif code == 3:
                    oid = self.order_value(a, ((int(last * 10_000) % 7) - 3) * 100.0)
                else:
                    oid = self.order_target(a, (int(last * 10_000) % 11) - 5)
                if oid is not None:
                    orders.append((t, int(a), oid))

    return Probe


def _same(x, y) -> bool:
    if isinstance(x, np.ndarray):
        return x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
    if isinstance(x, tuple):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, float) and np.isnan(x):
        return isinstance(y, float) and np.isnan(y)
    return x == y


@SETTINGS
@given(paths=price_paths(), other=price_paths(min_bars=24, max_bars=24), data=st.data())
def test_no_look_ahead(make, paths, other, data):
    open_, close = paths
    T, N = close.shape
    k = data.draw(st.integers(0, T - 2), label="k")
    start = data.draw(st.integers(0, k), label="start bar")
    fill_price = data.draw(st.sampled_from(["open", "close"]), label="fill_price")
    # Everything strictly after bar k is replaced (values and which bars exist).
    o2, c2 = open_.copy(), close.copy()
    oo, oc = other
    cols = np.arange(N) % oo.shape[1]
    o2[k + 1:] = oo[k + 1:T, cols] * 1.37
    c2[k + 1:] = oc[k + 1:T, cols] * 0.71
    runs = []
    for o, c in ((open_, close), (o2, c2)):
        b = make.arrays(o, c)
        sink: list = []
        orders: list = []
        res = run_algorithm(make_probe(sink, orders), b, start=b.calendar[start], fill_price=fill_price)
        runs.append((sink, orders, res))
    (s1, o1, r1), (s2, o2_, r2) = runs
    seen1 = [e for e in s1 if e[1] <= k]
    seen2 = [e for e in s2 if e[1] <= k]
    assert len(seen1) == len(seen2) > 0
    for e1, e2 in zip(seen1, seen2, strict=True):
        assert _same(e1, e2), (e1, e2)
    # what was seen really ends at the current bar: the last close row is bar t's close
    for e in seen1:
        if e[0] == "hd":
            assert np.array_equal(e[2][-1], close[e[1]], equal_nan=True)
        elif e[1] < 0:  # before_trading_start of the calendar's first bar: no bar yet
            assert np.isnan(e[2]).all()
        else:  # before_trading_start of bar t+1 sees bar t last
            assert np.array_equal(e[2][-1], close[e[1]], equal_nan=True)
    assert [x for x in o1 if x[0] <= k] == [x for x in o2_ if x[0] <= k]
    n = k + 1 - start
    assert r1.bars.head(n).equals(r2.bars.head(n))
    cal_k = make.arrays(open_, close).calendar[k].astype("datetime64[us]").item()
    t1 = r1.transactions.filter(r1.transactions["date"] <= cal_k)
    t2 = r2.transactions.filter(r2.transactions["date"] <= cal_k)
    assert t1.equals(t2)
    np.testing.assert_array_equal(r1.positions[:n], r2.positions[:n])


@SETTINGS
@given(paths=price_paths(), data=st.data())
def test_accounting_identity_and_replay(make, paths, data):
    open_, close = paths
    T, N = close.shape
    start = data.draw(st.integers(0, T - 1), label="start bar")
    fill_price = data.draw(st.sampled_from(["open", "close"]), label="fill_price")
    capital = data.draw(st.sampled_from([1_000.0, 100_000.0]), label="capital")
    b = make.arrays(open_, close)
    orders: list = []
    res = run_algorithm(make_probe([], orders), b, start=b.calendar[start], capital_base=capital,
                        fill_price=fill_price)
    check_replay(res, b, open_, close, orders, start, capital, fill_price)


def check_replay(res, b, open_, close, orders, start, capital, fill_price):
    """cash + positions == PV, and a replay of the transaction log reproduces cash, PV and positions."""
    T, N = close.shape
    bars = res.bars
    cash = bars["cash"].to_numpy()
    pv = bars["portfolio_value"].to_numpy()
    posv = bars["positions_value"].to_numpy()
    np.testing.assert_allclose(cash + posv, pv, rtol=1e-12, atol=1e-9)

    # Independent replay of the transaction log.
    sym_col = {f"S{i}": i for i in range(N)}
    ffill = close.copy()
    for t in range(1, T):
        m = np.isnan(ffill[t])
        ffill[t, m] = ffill[t - 1, m]
    bar_of = {np.datetime64(d, "ns"): i for i, d in enumerate(b.calendar)}
    ref_block = open_ if fill_price == "open" else close
    placed_at = {oid: (t, a) for t, a, oid in orders}
    tx = res.transactions
    tx_bar = [bar_of[np.datetime64(d, "ns")] for d in tx["date"].to_numpy()]
    run_cash = capital
    pos = np.zeros(N)
    j = 0
    exp_cash, exp_pv, exp_pos = [], [], []
    for t in range(start, T):
        while j < len(tx_bar) and tx_bar[j] == t:
            row = tx.row(j, named=True)
            a = sym_col[row["symbol"]]
            q, p, c = row["amount"], row["price"], row["commission"]
            # the fill is the slippage-adjusted reference price of this bar, for an order placed earlier
            ref = ref_block[t, a]
            assert not np.isnan(ref)
            assert p == pytest.approx(ref * (1 + np.sign(q) * 7e-4), rel=1e-12)
            assert c == pytest.approx(max(0.5, abs(q) * 0.01), rel=1e-12)
            t_placed, a_placed = placed_at[row["order_id"]]
            assert a_placed == a and t_placed < t
            # ... at the first bar after placement where the asset has a bar
            assert np.isnan(ref_block[t_placed + 1:t, a]).all()
            run_cash -= q * p + c
            pos[a] += q
            j += 1
        held = pos != 0
        exp_cash.append(run_cash)
        exp_pv.append(run_cash + float(np.dot(pos[held], ffill[t, held])))
        exp_pos.append(pos.copy())
    assert j == len(tx_bar), "transactions out of bar order or outside the run"
    np.testing.assert_allclose(cash, exp_cash, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pv, exp_pv, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(res.positions, np.array(exp_pos).reshape(len(exp_pos), N))
    # order ids in the log are unique (each market order fills whole, once)
    assert tx["order_id"].n_unique() == tx.height


def test_replay_covers_long_and_short(make):
    """A fixed example of the replay property that is known to hold both long and short positions."""
    rng = np.random.default_rng(7)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.03, size=(40, 3)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, size=close.shape))
    close[5, 1] = open_[5, 1] = np.nan
    b = make.arrays(open_, close)
    res = run_algorithm(make_probe([], []), b)
    assert (res.positions > 0).any() and (res.positions < 0).any()
    assert res.transactions.height > 10


def test_replay_with_many_orders_per_bar(make):
    """More than 32 open orders in a bar take the ledger's NumPy batch path; it must book the same way."""
    rng = np.random.default_rng(11)
    T, N = 30, 45
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.04, size=(T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, size=close.shape))
    gaps = rng.random((T, N)) < 0.1
    gaps[0] = False
    close[gaps] = np.nan
    open_[gaps] = np.nan
    b = make.arrays(open_, close)
    orders: list = []
    res = run_algorithm(make_probe([], orders), b, capital_base=100_000.0)
    per_bar = res.transactions.group_by("date").len()["len"]
    assert per_bar.max() > 32
    check_replay(res, b, open_, close, orders, 0, 100_000.0, "open")
    assert (res.positions > 0).any() and (res.positions < 0).any()


@SETTINGS
@given(data=st.data())
def test_ledger_batch_equals_scalar_path(data):
    """``Ledger.execute`` (NumPy batch) books like ``execute_one`` per order, cost basis included."""
    from rustybt_ray.engine import Ledger

    n = data.draw(st.integers(1, 6), label="assets")
    qty = st.integers(-50, 50).map(float)
    px = st.floats(1.0, 100.0)
    led_a = Ledger(n, 10_000.0, PerShare(0.01, 1.0), FixedBasisPointsSlippage(10))
    led_b = Ledger(n, 10_000.0, PerShare(0.01, 1.0), FixedBasisPointsSlippage(10))
    for bar in range(data.draw(st.integers(1, 6), label="bars")):
        assets = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8), label="assets"))
        amounts = np.array([data.draw(qty) for _ in assets])
        prices = np.array([data.draw(st.one_of(px, st.just(float("nan")))) for _ in assets])
        ids = np.arange(len(assets)) + 100 * bar
        mask = led_a.execute(bar, assets, amounts, prices, ids)
        for a, q, p, o, m in zip(assets.tolist(), amounts.tolist(), prices.tolist(), ids.tolist(), mask.tolist(),
                                 strict=True):
            assert led_b.execute_one(bar, a, q, p, o) == m
    assert led_a.pos == led_b.pos
    np.testing.assert_allclose(led_a.cost, led_b.cost, rtol=1e-12, atol=1e-12)
    assert led_a.cash == pytest.approx(led_b.cash, rel=1e-12)
    ta, tb = led_a.transactions(), led_b.transactions()
    for f in ("bar", "asset", "amount", "price", "commission", "order_id"):
        np.testing.assert_allclose(getattr(ta, f), getattr(tb, f), rtol=1e-12)
