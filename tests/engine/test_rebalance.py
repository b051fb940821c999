"""``order_target_percents`` (the batch rebalance), the inlined fill and rounding paths it relies on,
and ``SmaCrossoverCached`` (batch orders) against ``SmaCrossover`` (per-asset orders)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustybt_ray.engine import (
    ArrayCache,
    BasisPoints,
    FixedBasisPointsSlippage,
    Ledger,
    NoCommission,
    NoSlippage,
    PerDollar,
    PerShare,
    TradingAlgorithm,
    run_algorithm,
    run_metrics,
)
from rustybt_ray.engine import rebalance, rows
from rustybt_ray.engine.shares import round_shares as _round_shares
from rustybt_ray.errors import OrderError, SymbolNotFoundError
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10"]
NAN = float("nan")
FREE = {"commission": NoCommission(), "slippage": NoSlippage()}


@pytest.fixture(scope="module")
def bundle(make):
    # BBB has no bar at 2 and 3; CCC starts at bar 2.
    return make.bundle(DATES, {
        "AAA": {"open": [10, 11, 12, 13, 14, 15, 16], "close": [10, 11, 12, 13, 14, 15, 16]},
        "BBB": {"open": [20, 20, NAN, NAN, 24, 25, 26], "close": [20, 20, NAN, NAN, 24, 25, 26]},
        "CCC": {"open": [NAN, NAN, 30, 31, 32, 33, 34], "close": [NAN, NAN, 30, 31, 32, 33, 34]},
    })


# -- SmaCrossoverCached (one batch call per bar) == SmaCrossover (a call per asset) ----------------


@pytest.mark.parametrize("fast,slow", [(10, 50), (5, 20), (25, 100), (50, 215)])
@pytest.mark.parametrize("costs", ["default", "free"])
def test_cached_batch_strategy_equals_per_asset_strategy(demo_bundle, fast, slow, costs):
    kw = {} if costs == "default" else dict(FREE)
    params = {"fast": fast, "slow": slow}
    natural = run_algorithm(SmaCrossover, demo_bundle, capital_base=1e6, params=params, **kw)
    cache = ArrayCache()
    for _ in range(2):  # a miss, then the sweep's case: both averages are cache hits
        m, ret = run_metrics(SmaCrossoverCached, demo_bundle, capital_base=1e6, params=params, cache=cache,
                             with_returns=True, **kw)
    assert cache.stats()["hits"] >= 2
    assert m["final_value"] == pytest.approx(natural.final_value, rel=1e-9, abs=0)
    assert m["n_transactions"] == natural.metrics["n_transactions"] == natural.transactions.height > 100
    np.testing.assert_allclose(ret, natural.returns, rtol=1e-9, atol=1e-12)
    full = run_algorithm(SmaCrossoverCached, demo_bundle, capital_base=1e6, params=params, cache=cache, **kw)
    np.testing.assert_allclose(full.bars["portfolio_value"].to_numpy(), natural.bars["portfolio_value"].to_numpy(),
                               rtol=1e-9, atol=0)
    assert full.transactions.equals(natural.transactions)
    assert abs(natural.final_value / 1e6 - 1) > 0.1  # it really traded


def test_cached_strategy_over_a_date_range(demo_bundle):
    # a run that starts after the bundle's first bar: the averages' warm-up is in the data before it
    kw = {"capital_base": 250_000.0, "params": {"fast": 15, "slow": 60}}
    a = run_algorithm(SmaCrossover, demo_bundle, "2013-03-01", "2016-06-30", **kw)
    b = run_algorithm(SmaCrossoverCached, demo_bundle, "2013-03-01", "2016-06-30", cache=ArrayCache(), **kw)
    np.testing.assert_allclose(b.bars["portfolio_value"].to_numpy(), a.bars["portfolio_value"].to_numpy(), rtol=1e-9)
    assert b.transactions.equals(a.transactions)


def test_without_the_row_cache_the_numbers_do_not_change(demo_bundle, monkeypatch):
    b = demo_bundle.slice("2012-01-01", "2014-12-31")
    with_rows = run_algorithm(SmaCrossover, b, params={"fast": 5, "slow": 20})
    monkeypatch.setattr(rows, "MAX_CELLS", 0)
    assert rows.row_lists(b, "price") is None
    plain = run_algorithm(SmaCrossover, b, params={"fast": 5, "slow": 20})
    batch = run_algorithm(SmaCrossoverCached, b, params={"fast": 5, "slow": 20}, cache=ArrayCache())
    pv = with_rows.bars["portfolio_value"].to_numpy()
    np.testing.assert_array_equal(plain.bars["portfolio_value"].to_numpy(), pv)
    assert plain.transactions.equals(with_rows.transactions) and batch.transactions.equals(with_rows.transactions)


# -- the batch API by hand ----------------------------------------------------------------------------


def test_order_target_percents_by_hand(bundle):
    got: dict = {}

    class Batch(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            if t == 0:
                # 0.5 * 100000 / 10 = 5000 AAA; -0.25 * 100000 / 20 = -1250 BBB; CCC has no price but weight 0
                got[0] = self.order_target_percents(np.array([0.5, -0.25, 0.0]))
                got["open"] = {a.symbol: [o.amount for o in os] for a, os in self.get_open_orders().items()}
            if t == 1:
                # PV_1 = 100000 - 5000 * 11 + 1250 * 20 + 5000 * 11 - 1250 * 20: the weights held now
                got[1] = self.order_target_percents(np.array([5000 * 11 / 1e5, -1250 * 20 / 1e5, 0.0]))
            if t == 4:
                # cash = 100000 - 5000 * 11 + 1250 * 20 = 70000; PV_4 = 70000 + 5000 * 14 - 1250 * 24 = 110000
                # AAA 0.3 * 110000 / 14 - 5000 = -2642.857 -> -2642 (toward zero); BBB 0 - (-1250) = +1250;
                # CCC 0.1 * 110000 / 32 = 343.75 -> 343
                got[4] = self.order_target_percents([0.3, 0, 0.1])

    res = run_algorithm(Batch, bundle, **FREE)
    assert got[0] == [1, 2] and got[1] == [] and got[4] == [3, 4, 5]
    assert got["open"] == {"AAA": [5000.0], "BBB": [-1250.0]}
    assert res.transactions.select("symbol", "amount", "price", "order_id").rows() == [
        ("AAA", 5000.0, 11.0, 1), ("BBB", -1250.0, 20.0, 2),
        ("AAA", -2642.0, 15.0, 3), ("BBB", 1250.0, 25.0, 4), ("CCC", 343.0, 33.0, 5)]
    assert res.positions[-1].tolist() == [2358.0, 0.0, 343.0]


def test_subsets_mappings_and_series(bundle):
    seen: list = []

    class Forms(TradingAlgorithm):
        def handle_data(self, data) -> None:
            t = data.bar_index
            aaa, bbb, ccc = self.assets
            if t == 0:
                seen.append(self.order_target_percents([0.2], assets=[bbb]))  # 0.2 * 100000 / 20 = 1000 BBB
                seen.append(self.order_target_percents({"AAA": 0.1}))  # 1000 AAA
            if t == 4:
                seen.append(self.order_target_percents(pd.Series({ccc: 0.05, aaa: 0.0})))
                seen.append(self.order_target_percents(np.array([0.2]), assets=["BBB"]))  # there already? no: PV moved

    res = run_algorithm(Forms, bundle, **FREE)
    assert seen[0] == [1] and seen[1] == [2]
    rows_ = res.transactions.select("symbol", "amount").rows()
    assert rows_[:2] == [("BBB", 1000.0), ("AAA", 1000.0)]
    # bar 4: cash = 100000 - 1000 * 20 - 1000 * 11 = 69000, PV = 69000 + 1000 * 24 + 1000 * 14 = 107000
    # CCC 0.05 * 107000 / 32 = 167.1875 -> 167; AAA -1000; BBB 0.2 * 107000 / 24 - 1000 = -108.33 -> -108
    assert rows_[2:] == [("CCC", 167.0), ("AAA", -1000.0), ("BBB", -108.0)]


@pytest.mark.parametrize("numpy_sizing", [False, True])
def test_errors_name_the_problem_and_place_nothing(bundle, monkeypatch, numpy_sizing):
    checked: list = []
    if numpy_sizing:
        monkeypatch.setattr(rebalance, "_NUMPY_FROM", 1)

    class Bad(TradingAlgorithm):
        def handle_data(self, data) -> None:
            if data.bar_index != 1:
                return
            if numpy_sizing:
                self.order_target_percent(self.assets[0], 0.0)  # no order, but the bar's view is now cached
            for weights, kw, match in [
                (np.array([0.1, 0.1]), {}, "2 weights for 3 assets"),
                ([0.1, 0.2], {"assets": ["AAA"]}, "2 weights for 1 assets"),
                (np.array([0.1, NAN, 0.0]), {}, "BBB must be finite"),
                ([0.1, 0.0, math.inf], {}, "CCC must be finite"),
                (["a", 0.0, 0.0], {}, "must be numbers"),
                (np.zeros((3, 1)), {}, "1-D"),
                (np.array(["x", "y", "z"]), {}, "must be numbers"),
                (0.5, {}, "sequence of weights"),
                (np.array([0.1, 0.1, 0.1]), {}, "CCC has no price"),  # AAA, BBB would be fine: none placed
                ([0.1, 0.1], {"assets": ["AAA", "AAA", "CCC"]}, "2 weights for 3 assets"),
                ({"AAA": 0.1}, {"assets": ["AAA"]}, "drop assets="),
                ([0.1], {"assets": "AAA"}, "sequence of assets"),
                ([0.1], {"assets": [7]}, "cannot order 7"),
                ([1e308], {"assets": ["AAA"]}, "out of range"),
            ]:
                with pytest.raises(OrderError, match=match):
                    self.order_target_percents(weights, **kw)
                assert not self.get_open_orders()
                checked.append(match)
            with pytest.raises(SymbolNotFoundError, match="ZZZ"):  # as order_target_percent("ZZZ", ...)
                self.order_target_percents([0.1], assets=["ZZZ"])
            # a later call in the same bar still works and sees nothing from the failed ones
            assert self.order_target_percents([0.1, 0.0, 0.0]) == [1]

    res = run_algorithm(Bad, bundle, **FREE)
    assert len(checked) == 14
    assert res.transactions["amount"].to_list() == [909.0]  # 0.1 * 100000 / 11 = 909.09


def test_order_target_percents_in_initialize_raises(bundle):
    class Early(TradingAlgorithm):
        def initialize(self) -> None:
            self.order_target_percents([0.5, 0.0, 0.0])

    with pytest.raises(OrderError, match="initialize"):
        run_algorithm(Early, bundle, start=DATES[2])


# -- the batch equals the per-asset calls, in every state the book can be in --------------------------


def _mixed(batch: bool, rng_seed: int):
    """A strategy that sets random target weights each bar (some zero, some negative), sometimes via a
    per-asset call first, and leaves orders open on assets without a bar."""

    class Mixed(TradingAlgorithm):
        def initialize(self) -> None:
            self.rng = np.random.default_rng(rng_seed)
            self.ids: list = []

        def handle_data(self, data) -> None:
            n = len(self.assets)
            w = self.rng.uniform(-0.15, 0.3, size=n)
            w[self.rng.random(n) < 0.3] = 0.0
            tradable = np.array([data.can_trade(a) for a in self.assets])
            w[~tradable] = 0.0
            first = self.rng.random() < 0.3  # a per-asset call first: the batch sees a cached view
            if first:
                a = int(np.flatnonzero(tradable)[0]) if tradable.any() else 0
                if tradable.any():
                    self.ids.append(self.order_target_percent(self.assets[a], float(w[a])))
            if batch:
                self.ids.extend(self.order_target_percents(w))
            else:
                self.ids.extend(i for i in (self.order_target_percent(a, float(x)) for a, x in zip(self.assets, w))
                                if i is not None)

    return Mixed


@pytest.mark.parametrize("n_assets", [3, 8, 70])
def test_batch_equals_per_asset_calls_on_random_paths(make, n_assets):
    rng = np.random.default_rng(n_assets)
    T = 40
    close = 30 * np.exp(np.cumsum(rng.normal(0, 0.05, size=(T, n_assets)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, size=close.shape))
    gaps = rng.random((T, n_assets)) < 0.15
    gaps[0] = False
    close[gaps] = open_[gaps] = np.nan
    close[:5, -1] = open_[:5, -1] = np.nan  # an asset that starts late
    b = make.arrays(open_, close)
    for seed in (1, 2):
        batch = run_algorithm(_mixed(True, seed), b, capital_base=50_000.0,
                              commission=PerShare(0.01, 1.0), slippage=FixedBasisPointsSlippage(10))
        single = run_algorithm(_mixed(False, seed), b, capital_base=50_000.0,
                               commission=PerShare(0.01, 1.0), slippage=FixedBasisPointsSlippage(10))
        assert batch.transactions.equals(single.transactions)
        np.testing.assert_array_equal(batch.bars["portfolio_value"].to_numpy(),
                                      single.bars["portfolio_value"].to_numpy())
        assert batch.transactions.height > T * min(n_assets, 8) // 2


def test_numpy_sizing_path_equals_the_float_loop(make, monkeypatch):
    rng = np.random.default_rng(5)
    close = 40 * np.exp(np.cumsum(rng.normal(0, 0.05, size=(25, 6)), axis=0))
    b = make.arrays(close * 1.01, close)
    loop = run_algorithm(_mixed(True, 3), b)
    monkeypatch.setattr(rebalance, "_NUMPY_FROM", 2)  # every call with a cached view goes through NumPy
    numpy = run_algorithm(_mixed(True, 3), b)
    assert numpy.transactions.equals(loop.transactions)


def test_an_asset_listed_twice_sees_its_first_order(bundle):
    class Twice(TradingAlgorithm):
        def handle_data(self, data) -> None:
            if data.bar_index == 0:
                # as two order_target_percent calls: 0.1 -> 1000 AAA, then 0.2 -> 1000 more
                assert self.order_target_percents([0.1, 0.2], assets=["AAA", "AAA"]) == [1, 2]

    res = run_algorithm(Twice, bundle, **FREE)
    assert res.transactions["amount"].to_list() == [1000.0, 1000.0]


# -- the pieces underneath ------------------------------------------------------------------------------


def _round_reference(x: float) -> float:
    r = round(x)
    return float(r) if abs(x - r) < 1e-4 else float(math.trunc(x))


def test_round_shares_equals_the_round_form_at_the_boundaries():
    xs = []
    for k in [0, 1, 2, 7, 10, 999, 10**6, 2**40, 2**51, 2**52 - 1]:
        for base in (k - 1e-4, k + 1e-4, k - 0.5, k + 0.5, k - 0.9999, k + 0.9999, float(k)):
            x = base
            for _ in range(6):
                xs.extend([x, -x])
                x = math.nextafter(x, math.inf)
            x = base
            for _ in range(6):
                x = math.nextafter(x, -math.inf)
                xs.extend([x, -x])
    xs.extend(np.random.default_rng(0).normal(0, 1e4, 20_000).tolist())
    xs.extend((np.random.default_rng(1).integers(-10**6, 10**6, 5000) + 0.99990000001).tolist())
    for x in xs:
        assert _round_shares(x) == _round_reference(x), x


COSTS = [
    (PerShare(0.01, 1.0), FixedBasisPointsSlippage(10)),
    (PerShare(0.001), FixedBasisPointsSlippage(5)),
    (NoCommission(), NoSlippage()),
    (PerShare(0.0), NoSlippage()),
    (PerDollar(0.002), FixedBasisPointsSlippage(3)),  # a model without an inlined form
    (BasisPoints(5), NoSlippage()),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_execute_orders_books_like_execute_one_bit_for_bit(data):
    """The inlined fill loop equals ``execute_one`` per order exactly; cost bases equal an eager replay."""
    commission, slippage = COSTS[data.draw(st.integers(0, len(COSTS) - 1), label="costs")]
    n = data.draw(st.integers(1, 5), label="assets")
    a_led = Ledger(n, 10_000.0, commission, slippage)
    b_led = Ledger(n, 10_000.0, commission, slippage)
    pos, cost = [0.0] * n, [0.0] * n  # zipline's cost-basis rule, eagerly
    for bar in range(data.draw(st.integers(1, 6), label="bars")):
        assets = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6), label="orders")
        amounts = [float(data.draw(st.integers(-60, 60).filter(bool))) for _ in assets]
        row = [data.draw(st.one_of(st.floats(1.0, 100.0), st.just(NAN))) for _ in range(n)]
        ids = [100 * bar + i for i in range(len(assets))]
        unfilled = a_led.execute_orders(bar, assets, amounts, ids, row)
        for a, q, o in zip(assets, amounts, ids):
            filled = b_led.execute_one(bar, a, q, row[a], o)
            assert filled == (o not in unfilled)
            if filled:
                price = slippage.fill_price_one(q, row[a])
                old, new = pos[a], pos[a] + q
                if new == 0:
                    cost[a] = 0.0
                elif old == 0 or (old > 0) == (q > 0):
                    cost[a] = (cost[a] * old + price * q) / new
                elif (new > 0) == (q > 0):
                    cost[a] = price
                pos[a] = new
        if bar % 2:
            assert a_led.cost == cost  # read in the middle: the replay resumes where it stopped
    assert a_led.cash == b_led.cash and a_led.pos == b_led.pos == pos
    assert a_led.cost == b_led.cost == cost
    ta, tb = a_led.transactions(), b_led.transactions()
    for f in ("bar", "asset", "amount", "price", "commission", "order_id"):
        np.testing.assert_array_equal(getattr(ta, f), getattr(tb, f))


def test_cost_models_changed_mid_run_apply_to_later_fills():
    comm = PerShare(0.01)
    led = Ledger(2, 1000.0, comm, FixedBasisPointsSlippage(0))
    led.execute_orders(0, [0], [10.0], [1], [5.0, 5.0])
    assert led.cash == 1000.0 - 50.0 - 0.1
    comm.cost = 0.5  # a model's setting changed in place
    led.execute_orders(1, [0], [10.0], [2], [5.0, 5.0])
    assert led.cash == pytest.approx(1000.0 - 100.0 - 0.1 - 5.0, abs=1e-12)
    led.slippage = FixedBasisPointsSlippage(100)  # a model replaced
    led.execute_orders(2, [1], [-10.0], [3], [5.0, 10.0])
    assert led.transactions().price[-1] == 10.0 * 0.99


def test_row_lists_match_the_field_and_are_shared(demo_bundle):
    got = rows.row_lists(demo_bundle, "open")
    assert got is rows.row_lists(demo_bundle, "open")
    np.testing.assert_array_equal(np.array(got), demo_bundle.open)
    marks = np.array(rows.row_lists(demo_bundle, "price", nan_as_zero=True))
    np.testing.assert_array_equal(marks, np.nan_to_num(demo_bundle.price, nan=0.0))
