"""Limit, stop and stop-limit orders: every fill worked out by hand on a small bundle with known OHLC.

Bundle (daily, 8 bars, 2024-01-02 .. 2024-01-11):

    bar      0     1     2     3     4     5     6     7
    AAA open 10    10    10.2  8.5   8.6   10.5  11.0  11.2
    AAA high 10.5  10.8  10.4  8.8   9.9   11.0  11.5  11.3
    AAA low  9.5   9.6   9.0   8.2   8.5   10.4  10.8  11.0
    AAA clse 10    10.2  9.2   8.6   9.8   10.9  11.2  11.1
    BBB open 20    20    --    19    19.5  20    20    20      (no bar at 2)
    BBB high 20.5  20.5  --    19.5  20    20.5  20.5  20.5
    BBB low  19.5  19.5  --    18.5  19    19.5  19.5  19.5
    BBB clse 20    20    --    19    19.5  20    20    20

Bar 3 gaps down (opens at 8.5 under bar 2's low), bar 5 gaps up (opens at 10.5 over
bar 4's high). Costs are off (``NoCommission``, ``NoSlippage``) unless a test says
otherwise, so every fill price is the rule's price.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rustybt_ray
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine import (
    FixedBasisPointsSlippage,
    LimitOrder,
    MarketOrder,
    NoCommission,
    NoSlippage,
    PerShare,
    StopLimitOrder,
    StopOrder,
    TradingAlgorithm,
    VolumeShareSlippage,
    run_algorithm,
)
from rustybt_ray.errors import OrderError, RustyBTError

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10",
         "2024-01-11"]
NAN = float("nan")
DATA = {
    "AAA": {"open": [10, 10, 10.2, 8.5, 8.6, 10.5, 11.0, 11.2],
            "high": [10.5, 10.8, 10.4, 8.8, 9.9, 11.0, 11.5, 11.3],
            "low": [9.5, 9.6, 9.0, 8.2, 8.5, 10.4, 10.8, 11.0],
            "close": [10, 10.2, 9.2, 8.6, 9.8, 10.9, 11.2, 11.1]},
    "BBB": {"open": [20, 20, NAN, 19, 19.5, 20, 20, 20],
            "high": [20.5, 20.5, NAN, 19.5, 20, 20.5, 20.5, 20.5],
            "low": [19.5, 19.5, NAN, 18.5, 19, 19.5, 19.5, 19.5],
            "close": [20, 20, NAN, 19, 19.5, 20, 20, 20]},
}
FREE = {"commission": NoCommission(), "slippage": NoSlippage()}
CAPITAL = 100_000.0


@pytest.fixture(scope="module")
def bundle(make):
    return make.bundle(DATES, DATA)


def scripted(plan: dict, log: list | None = None):
    """A strategy placing ``plan[bar]``: a list of ``(method, symbol, args, kwargs)``; logs its open orders."""

    class Scripted(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            for method, sym, args, kwargs in plan.get(t, []):
                if method == "cancel":
                    self.cancel_order(self.ids[args])
                    continue
                oid = getattr(self, method)(self.symbol(sym), *args, **kwargs)
                self.ids = getattr(self, "ids", []) + [oid]
            if log is not None:
                log.append((t, {a.symbol: [(o.id, o.amount, o.filled, o.limit, o.stop, o.stop_reached) for o in os]
                                for a, os in self.get_open_orders().items()}))

    return Scripted


def fills(res) -> list[tuple[int, str, float, float]]:
    """``(bar, symbol, amount, price)`` of every fill."""
    return [(DATES.index(str(r["date"])[:10]), r["symbol"], r["amount"], round(r["price"], 10))
            for r in res.transactions.iter_rows(named=True)]


CASES = {
    # name: (bar placed, amount, style, expected fills [(bar, amount, price)])
    "limit buy fills when low reaches the limit": (0, 100, LimitOrder(9.5), [(2, 100, 9.5)]),
    "limit buy gap below fills at the open": (2, 100, LimitOrder(9.0), [(3, 100, 8.5)]),
    "limit sell fills when high reaches the limit": (0, -100, LimitOrder(10.6), [(1, -100, 10.6)]),
    "limit sell gap above fills at the open": (4, -100, LimitOrder(10.0), [(5, -100, 10.5)]),
    "stop buy triggers at the stop": (0, 100, StopOrder(10.6), [(1, 100, 10.6)]),
    "stop buy gap through fills at the open": (4, 100, StopOrder(10.0), [(5, 100, 10.5)]),
    "stop sell triggers at the stop": (1, -100, StopOrder(9.3), [(2, -100, 9.3)]),
    "stop sell gap through fills at the open": (2, -100, StopOrder(9.0), [(3, -100, 8.5)]),
    # stop 9.5 reached intrabar at bar 4 (open 8.6): trigger price 9.5 is within the limit 9.7
    "stop-limit buy fills at the trigger price": (3, 100, StopLimitOrder(9.7, 9.5), [(4, 100, 9.5)]),
    # bar 5 opens at 10.5 over the stop 10: triggered at the open, over the limit 10.45; low 10.4 reaches it
    "stop-limit buy triggered at the open fills at the limit": (4, 100, StopLimitOrder(10.45, 10.0),
                                                                [(5, 100, 10.45)]),
    "stop-limit sell fills at the trigger price": (1, -100, StopLimitOrder(9.1, 9.3), [(2, -100, 9.3)]),
    # bar 3 opens at 8.5 under the stop 9: triggered at the open, under the limit 8.7; high 8.8 reaches it
    "stop-limit sell gap fills at the limit": (2, -100, StopLimitOrder(8.7, 9.0), [(3, -100, 8.7)]),
    # bar 3: triggered at the open 8.5, high 8.8 never reaches 8.9; bar 4 (limit rule): high 9.9 >= 8.9
    "stop-limit sell waits as a limit order": (2, -100, StopLimitOrder(8.9, 9.0), [(4, -100, 8.9)]),
    # bar 5: triggered at the open 10.5 > limit 10.3, low 10.4 > 10.3; never low enough afterwards
    "stop-limit buy triggered, never fills": (3, 100, StopLimitOrder(10.3, 10.0), []),
    "market order fills at the next open": (1, 100, MarketOrder(), [(2, 100, 10.2)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fill_rule_by_hand(bundle, name):
    bar, amount, style, expected = CASES[name]
    log: list = []
    res = run_algorithm(scripted({bar: [("order", "AAA", (amount,), {"style": style})]}, log), bundle, **FREE)
    assert fills(res) == [(b, "AAA", float(q), p) for b, q, p in expected]
    # the ledger: cash moves by the fill, equity marks the position at each close
    cash = np.full(len(DATES), CAPITAL)
    pos = np.zeros(len(DATES))
    for b, q, p in expected:
        cash[b:] -= q * p
        pos[b:] += q
    close = np.array(DATA["AAA"]["close"])
    np.testing.assert_allclose(res.bars["cash"].to_numpy(), cash, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.bars["portfolio_value"].to_numpy(), cash + pos * close, rtol=0, atol=1e-9)
    # open until the bar it fills at, and gone after
    filled_at = expected[0][0] if expected else len(DATES)
    for t, opens in log:
        assert bool(opens) == (bar <= t < filled_at), (t, opens)


def test_stop_limit_snapshot_reports_the_trigger(bundle):
    log: list = []
    run_algorithm(scripted({3: [("order", "AAA", (100,), {"limit_price": 10.3, "stop_price": 10.0})]}, log),
                  bundle, **FREE)
    by_bar = dict(log)
    assert by_bar[4]["AAA"] == [(1, 100.0, 0.0, 10.3, 10.0, False)]  # bar 4: high 9.9 < 10
    assert by_bar[5]["AAA"] == [(1, 100.0, 0.0, 10.3, 10.0, True)]  # triggered at bar 5's open
    assert by_bar[7]["AAA"] == [(1, 100.0, 0.0, 10.3, 10.0, True)]


def test_limit_order_persists_over_bars_then_fills(bundle):
    # limit 8.4: lows 9.6 (bar 1), 9.0 (bar 2), then 8.2 at bar 3: fills at min(8.5, 8.4)
    log: list = []
    res = run_algorithm(scripted({0: [("order", "AAA", (50,), {"limit_price": 8.4})]}, log), bundle, **FREE)
    assert fills(res) == [(3, "AAA", 50.0, 8.4)]
    assert [t for t, opens in log if opens] == [0, 1, 2]
    assert log[1][1] == {"AAA": [(1, 50.0, 0.0, 8.4, None, False)]}


def test_limit_order_waits_for_a_bar(bundle):
    # BBB has no bar at 2: a limit 21 buy placed at bar 1 fills at bar 3's open (19 <= 21)
    res = run_algorithm(scripted({1: [("order", "BBB", (10,), {"style": LimitOrder(21)})]}), bundle, **FREE)
    assert fills(res) == [(3, "BBB", 10.0, 19.0)]


def test_cancel_by_order_and_by_id(bundle):
    # limit 8.0 never fills (lowest low 8.2); the stop 10.6 buy would fill at bar 1 but is cancelled at bar 0
    log: list = []

    class Cancel(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            a = self.symbol("AAA")
            if t == 0:
                self.keep = self.order(a, 10, limit_price=8.0)
                stop = self.order(a, 10, stop_price=10.6)
                self.cancel_order(stop)
            if t == 4:
                (o,) = self.get_open_orders(a)
                self.cancel_order(o)
            log.append((t, [o.id for o in self.get_open_orders(a)]))

    res = run_algorithm(Cancel, bundle, **FREE)
    assert res.transactions.height == 0
    assert [ids for _, ids in log] == [[1]] * 4 + [[]] * 4
    with pytest.raises(OrderError, match="not open"):
        class Twice(TradingAlgorithm):
            def handle_data(self, data) -> None:
                if data.bar_index == 0:
                    oid = self.order(self.symbol("AAA"), 10, limit_price=8.0)
                    self.cancel_order(oid)
                    self.cancel_order(oid)

        run_algorithm(Twice, bundle, **FREE)


def test_several_orders_one_ledger(bundle):
    # All at once; cash and positions by hand:
    #   bar 1: sell 30 @ limit 10.6 (AAA) ; bar 2: buy 100 @ 9.5 (limit) ; bar 3: buy 10 BBB @ 19 (limit 21)
    plan = {0: [("order", "AAA", (100,), {"limit_price": 9.5}), ("order", "AAA", (-30,), {"limit_price": 10.6})],
            1: [("order", "BBB", (10,), {"limit_price": 21})]}
    res = run_algorithm(scripted(plan), bundle, **FREE)
    assert fills(res) == [(1, "AAA", -30.0, 10.6), (2, "AAA", 100.0, 9.5), (3, "BBB", 10.0, 19.0)]
    cash = res.bars["cash"].to_numpy()
    assert cash.tolist() == pytest.approx([CAPITAL, CAPITAL + 318, CAPITAL + 318 - 950] + [CAPITAL + 318 - 950 - 190] * 5)
    np.testing.assert_array_equal(res.positions[-1], [70.0, 10.0])
    assert res.bars["portfolio_value"][-1] == pytest.approx(CAPITAL + 318 - 950 - 190 + 70 * 11.1 + 10 * 20)


def test_costs_apply_as_for_market_orders(bundle):
    # limit buy 100 @ 9.5 at bar 2, 10 bps: 9.5 * 1.001 = 9.5095; commission max(1, 0.01 * 100) = 1
    res = run_algorithm(scripted({0: [("order", "AAA", (100,), {"style": LimitOrder(9.5)})]}), bundle,
                        commission=PerShare(0.01, 1.0), slippage=FixedBasisPointsSlippage(10))
    row = res.transactions.row(0, named=True)
    assert row["price"] == pytest.approx(9.5095) and row["commission"] == pytest.approx(1.0)
    assert res.bars["cash"][2] == pytest.approx(CAPITAL - 950.95 - 1.0)


SIZED = [
    ("order", (100,)),
    ("order_value", (1000.0,)),  # 1000 / close 10 at bar 0
    ("order_percent", (0.01,)),  # 1% of 100,000 / 10
    ("order_target", (100,)),
    ("order_target_value", (1000.0,)),
    ("order_target_percent", (0.01,)),
]


@pytest.mark.parametrize("method,args", SIZED)
@pytest.mark.parametrize("how", ["style", "limit_price"])
def test_every_order_method_takes_a_style(bundle, method, args, how):
    kwargs = {"style": LimitOrder(9.5)} if how == "style" else {"limit_price": 9.5}
    log: list = []
    res = run_algorithm(scripted({0: [(method, "AAA", args, kwargs)]}, log), bundle, **FREE)
    assert fills(res) == [(2, "AAA", 100.0, 9.5)]
    assert log[1][1] == {"AAA": [(1, 100.0, 0.0, 9.5, None, False)]}


def test_order_target_counts_open_limit_orders(bundle):
    # bar 0: limit buy 100 (open until bar 2); bar 1: order_target 100 -> nothing more to order
    plan = {0: [("order", "AAA", (100,), {"limit_price": 9.5})], 1: [("order_target", "AAA", (100,), {})]}
    res = run_algorithm(scripted(plan), bundle, **FREE)
    assert fills(res) == [(2, "AAA", 100.0, 9.5)]


@pytest.mark.parametrize("kwargs,match", [
    ({"style": LimitOrder(9.5), "limit_price": 9.5}, "not both"),
    ({"style": "limit"}, "style must be"),
    ({"limit_price": -1.0}, "limit_price"),
    ({"stop_price": NAN}, "stop_price"),
    ({"limit_price": "cheap"}, "limit_price"),
])
def test_bad_order_arguments_raise(bundle, kwargs, match):
    with pytest.raises(OrderError, match=match):
        run_algorithm(scripted({0: [("order", "AAA", (10,), kwargs)]}), bundle, **FREE)


def test_style_classes():
    with pytest.raises(OrderError, match="stop_price"):
        StopOrder(0)
    with pytest.raises(RustyBTError):
        StopLimitOrder(10, float("inf"))
    s = StopLimitOrder(10.5, 10)
    assert (s.get_limit_price(True), s.get_stop_price(False)) == (10.5, 10.0)
    assert MarketOrder().get_limit_price(True) is None
    assert repr(LimitOrder(9.5)) == "LimitOrder(limit_price=9.5)"
    assert rustybt_ray.LimitOrder is LimitOrder and rustybt_ray.StopLimitOrder is StopLimitOrder
    assert rustybt_ray.MarketOrder is MarketOrder and rustybt_ray.StopOrder is StopOrder


# -- property: random limit/stop orders keep the accounts and never look ahead ---------------------------

KINDS = ("market", "limit", "stop", "stoplimit")


def ohlcv(rng: np.random.Generator, T: int, N: int) -> np.ndarray:
    """A ``(5, T, N)`` block: random walks with consistent high/low, integer volumes (some 0), a few missing bars."""
    close = rng.uniform(5, 100, N) * np.exp(np.cumsum(rng.normal(0, 0.04, (T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.03, (T, N)))
    high = np.fmax(open_, close) * (1 + rng.uniform(0, 0.04, (T, N)))
    low = np.fmin(open_, close) * (1 - rng.uniform(0, 0.04, (T, N)))
    volume = rng.integers(0, 3000, (T, N)).astype(float)
    block = np.stack([open_, high, low, close, volume])
    missing = (rng.random((T, N)) < 0.1) & (np.arange(T) % 4 != 0)[:, None]
    block[:, missing] = np.nan
    return block


def bundle_of(block: np.ndarray) -> Bundle:
    T, N = block.shape[1:]
    cal = np.busday_offset(np.datetime64("2024-01-01", "D"), np.arange(T), roll="forward").astype("datetime64[ns]")
    return Bundle("orders-prop", "1d", cal, [f"S{i}" for i in range(N)], block)


def random_plan(rng: np.random.Generator, T: int, N: int) -> dict:
    """bar -> [(asset, amount, kind, limit factor, stop factor, cancel oldest?)]."""
    plan: dict = {}
    for t in range(T):
        for a in range(N):
            if rng.random() < 0.6:
                plan.setdefault(t, []).append((a, int(rng.integers(1, 40)) * int(rng.choice([-1, 1])),
                                               KINDS[int(rng.integers(0, 4))], rng.uniform(0.93, 1.07),
                                               rng.uniform(0.93, 1.07), rng.random() < 0.15))
    return plan


def prober(plan: dict, placed: dict, seen: list):
    class Prober(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            pf = self.portfolio
            seen.append((t, pf.cash, pf.portfolio_value,
                         tuple(sorted((int(a), p.amount) for a, p in pf.positions.items()))))
            for a, amount, kind, fl, fs, cancel in plan.get(t, []):
                asset = self.assets[a]
                if cancel:
                    opens = self.get_open_orders(asset)
                    if opens:
                        self.cancel_order(opens[0])
                if not data.can_trade(asset):
                    continue
                c = data.current(asset, "close")
                limit = stop = None
                if kind in ("limit", "stoplimit"):
                    limit = c * fl
                if kind in ("stop", "stoplimit"):
                    stop = c * fs
                oid = self.order(asset, amount, limit_price=limit, stop_price=stop)
                placed[oid] = (t, a, amount, kind, limit, stop)

    return Prober


def _run(block, plan, costs):
    placed: dict = {}
    seen: list = []
    res = run_algorithm(prober(plan, placed, seen), bundle_of(block), capital_base=CAPITAL, **costs)
    return res, placed, seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(5, 16), N=st.integers(1, 3),
       volume_capped=st.booleans(), commission=st.booleans(), k_frac=st.floats(0, 1))
def test_random_limit_stop_orders_keep_the_accounts_and_never_look_ahead(seed, T, N, volume_capped, commission,
                                                                          k_frac):
    rng = np.random.default_rng(seed)
    block = ohlcv(rng, T, N)
    plan = random_plan(rng, T, N)
    costs = {"slippage": VolumeShareSlippage(0.05, 0.1) if volume_capped else NoSlippage(),
             "commission": PerShare(0.01, 1.0) if commission else NoCommission()}
    res, placed, seen = _run(block, plan, costs)
    o, h, lo, _, v = block
    tx = res.transactions
    bars = np.array([bar_of(res, d) for d in tx["date"].to_list()], dtype=int)
    assets = np.array([int(s[1:]) for s in tx["symbol"].to_list()], dtype=int)
    amount, price, comm, oids = (tx[k].to_numpy() for k in ("amount", "price", "commission", "order_id"))

    # 1. cash + holdings == equity at every bar, against a replay of the fills written here
    price_mark = bundle_of(block).price
    cash = np.full(T, CAPITAL)
    pos = np.zeros((T, N))
    for b, a, q, p, fee in zip(bars, assets, amount, price, comm, strict=True):
        cash[b:] -= q * p + fee
        pos[b:, a] += q
    held = pos != 0
    equity = cash + np.where(held, pos * np.where(held, price_mark, 0.0), 0.0).sum(axis=1)
    np.testing.assert_allclose(res.bars["cash"].to_numpy(), cash, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(res.bars["portfolio_value"].to_numpy(), equity, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(res.bars["cash"] + res.bars["positions_value"], res.bars["portfolio_value"],
                               rtol=1e-12, atol=1e-6)
    np.testing.assert_array_equal(res.positions, pos)
    for t, pf_cash, pf_value, _ in seen:  # what the strategy saw at each bar
        assert pf_cash == pytest.approx(cash[t], abs=1e-6) and pf_value == pytest.approx(equity[t], abs=1e-6)

    # 2. every fill follows its order's rule on its own bar
    done: dict = {}
    for b, a, q, p, oid in zip(bars, assets, amount, price, oids, strict=True):
        t0, a0, ordered, kind, limit, stop = placed[int(oid)]
        assert a == a0 and b > t0 and np.sign(q) == np.sign(ordered) and not np.isnan(o[b, a])
        ref = p
        if volume_capped:
            share = min(abs(q) / v[b, a], 0.05)
            ref = p / (1 + share * share * np.copysign(0.1, q))
        eps = 1e-9 * ref
        assert lo[b, a] - eps <= ref <= h[b, a] + eps, (kind, b, ref)
        buy = ordered > 0
        if kind == "market":
            assert ref == pytest.approx(o[b, a], rel=1e-12)
        if limit is not None:
            assert (ref <= limit + eps) if buy else (ref >= limit - eps)
        if stop is not None:
            reached = (h[t0 + 1:b + 1, a] >= stop) if buy else (lo[t0 + 1:b + 1, a] <= stop)
            assert reached.any()  # the stop triggered at this bar or before
            trigger = t0 + 1 + int(np.argmax(reached))
            if kind == "stop" and trigger == b:  # filled on the trigger bar: at the stop or through it
                assert (ref >= stop - eps) if buy else (ref <= stop + eps)
            elif kind == "stop":  # triggered earlier (a volume cap left some): a market order now
                assert ref == pytest.approx(o[b, a], rel=1e-12)
        done[int(oid)] = done.get(int(oid), 0.0) + q
        assert abs(done[int(oid)]) <= abs(ordered)
    if volume_capped:
        for (b, a) in set(zip(bars.tolist(), assets.tolist())):
            sel = (bars == b) & (assets == a)
            assert np.abs(amount[sel]).sum() <= 0.05 * v[b, a] + 1e-4

    # 3. no look-ahead: changing every bar after k changes no fill and nothing seen up to k
    k = min(int(k_frac * T), T - 1)
    other = block.copy()
    other[:4, k + 1:] *= 1.37
    other[4, k + 1:] = np.floor(other[4, k + 1:] / 3)
    res2, placed2, seen2 = _run(other, plan, costs)
    first = res.transactions.filter(res.transactions["date"] <= res.bars["date"][k])
    second = res2.transactions.filter(res2.transactions["date"] <= res2.bars["date"][k])
    assert first.equals(second)
    assert [s for s in seen if s[0] <= k] == [s for s in seen2 if s[0] <= k]
    assert {i: p for i, p in placed.items() if p[0] <= k} == {i: p for i, p in placed2.items() if p[0] <= k}


def bar_of(res, d) -> int:
    """The bar index of a fill's date in the run."""
    return int(np.searchsorted(res.bars["date"].to_numpy(), np.datetime64(d, "ns")))
