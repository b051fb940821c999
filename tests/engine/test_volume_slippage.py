"""VolumeShareSlippage: fills capped by bar volume, carried over several bars, priced by the share taken.

Bundle (daily, 5 bars), AAA: open = close, high = open + 0.5, low = open - 0.5:

    bar     0     1     2     3     4
    open    10    10    11    12    12
    volume  1000  1000  800   2000  1000

``VolumeShareSlippage(volume_limit=0.025, price_impact=0.1)``: per bar at most
2.5% of the volume fills; a fill of q shares pays ``ref + (q / volume) ** 2 * 0.1 * ref``.
A buy of 60 at bar 0 (market, filled at the opens):

    bar 1: cap 25 -> 25 @ 10 + 0.025**2 * 0.1 * 10     = 10.000625
    bar 2: cap 20 -> 20 @ 11 + 0.025**2 * 0.1 * 11     = 11.0006875
    bar 3: cap 50 -> 15 @ 12 + 0.0075**2 * 0.1 * 12    = 12.0000675
"""

from __future__ import annotations

import numpy as np
import pytest

from rustybt_ray.engine import (
    LimitOrder,
    NoCommission,
    PerShare,
    TradingAlgorithm,
    VolumeShareSlippage,
    run_algorithm,
)
from rustybt_ray.errors import RustyBTError, StrategyError

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
OPEN = [10.0, 10.0, 11.0, 12.0, 12.0]
VOLUME = [1000.0, 1000.0, 800.0, 2000.0, 1000.0]
CAPITAL = 100_000.0
ZIPLINE = VolumeShareSlippage(volume_limit=0.025, price_impact=0.1)


def data(volume=VOLUME):
    return {"AAA": {"open": OPEN, "close": OPEN, "high": [p + 0.5 for p in OPEN], "low": [p - 0.5 for p in OPEN],
                    "volume": volume}}


@pytest.fixture(scope="module")
def bundle(make):
    return make.bundle(DATES, data())


def placer(orders: list, log: list | None = None, fractional_log: bool = False):
    """Places ``orders`` (``(amount, kwargs)``) at bar 0; logs the open orders' (amount, filled, open_amount)."""

    class Placer(TradingAlgorithm):
        def handle_data(self, data) -> None:
            a = self.symbol("AAA")
            if data.bar_index == 0:
                for amount, kwargs in orders:
                    self.order(a, amount, **kwargs)
            if log is not None:
                log.append([(o.amount, o.filled, o.open_amount) for o in self.get_open_orders(a)])

    return Placer


def fills(res):
    return [(DATES.index(str(r["date"])[:10]), r["amount"], r["price"], r["commission"])
            for r in res.transactions.iter_rows(named=True)]


def test_partial_fill_carried_over_three_bars(bundle):
    log: list = []
    res = run_algorithm(placer([(60, {})], log), bundle, commission=NoCommission(), slippage=ZIPLINE)
    got = fills(res)
    assert [(b, q) for b, q, _, _ in got] == [(1, 25.0), (2, 20.0), (3, 15.0)]
    for (_, _, p, _), want in zip(got, [10.000625, 11.0006875, 12.0000675], strict=True):
        assert p == pytest.approx(want, rel=1e-14)
    # the order stays open with what is left, then is gone
    assert log == [[(60.0, 0.0, 60.0)], [(60.0, 25.0, 35.0)], [(60.0, 45.0, 15.0)], [], []]
    cash = CAPITAL - 25 * 10.000625 - 20 * 11.0006875 - 15 * 12.0000675
    assert res.bars["cash"][-1] == pytest.approx(cash, abs=1e-9)
    np.testing.assert_array_equal(res.positions[:, 0], [0, 25, 45, 60, 60])
    pv = np.array([CAPITAL, CAPITAL - 250.015625 + 25 * 10, CAPITAL - 250.015625 - 220.01375 + 45 * 11, cash + 60 * 12,
                   cash + 60 * 12])
    np.testing.assert_allclose(res.bars["portfolio_value"].to_numpy(), pv, rtol=0, atol=1e-9)


def test_sell_price_moves_down(bundle):
    res = run_algorithm(placer([(-60, {})]), bundle, commission=NoCommission(), slippage=ZIPLINE)
    b, q, p, _ = fills(res)[0]
    assert (b, q) == (1, -25.0) and p == pytest.approx(10 - 0.000625, rel=1e-14)


def test_orders_of_one_asset_share_the_cap(bundle):
    # two buys of 20: bar 1's 25 shares go 20 to the first (share 0.02), 5 to the second (share 0.005);
    # bar 2 (cap 20) fills the second's 15 (share 15/800)
    res = run_algorithm(placer([(20, {}), (20, {})]), bundle, commission=NoCommission(), slippage=ZIPLINE)
    got = fills(res)
    assert [(b, q) for b, q, _, _ in got] == [(1, 20.0), (1, 5.0), (2, 15.0)]
    want = [10 + 0.02**2 * 0.1 * 10, 10 + 0.005**2 * 0.1 * 10, 11 + (15 / 800) ** 2 * 0.1 * 11]
    assert [p for _, _, p, _ in got] == pytest.approx(want, rel=1e-14)
    assert res.transactions["order_id"].to_list() == [1, 2, 2]


def test_per_share_minimum_is_charged_once_per_order(bundle):
    # PerShare(0.03, min 1): the order pays max(1, 0.03 * 60) = 1.8 in all, as zipline charges it:
    # bar 1: max(1, 0.75) = 1; bar 2: 0.03 * 45 - 1 = 0.35; bar 3: 0.03 * 60 - 1.35 = 0.45
    res = run_algorithm(placer([(60, {})]), bundle, commission=PerShare(0.03, 1.0), slippage=ZIPLINE)
    assert [c for *_, c in fills(res)] == pytest.approx([1.0, 0.35, 0.45], abs=1e-12)


def test_limit_order_under_a_volume_cap(bundle):
    # limit 10.5: bar 1 ref min(10, 10.5) = 10; bar 2 low 10.5 reaches it, ref 10.5 (the impact moves the price
    # past the limit: slippage applies as for market orders); bars 3-4 (lows 11.5) fill nothing: 15 stay open
    log: list = []
    res = run_algorithm(placer([(60, {"style": LimitOrder(10.5)})], log), bundle, commission=NoCommission(),
                        slippage=ZIPLINE)
    got = fills(res)
    assert [(b, q) for b, q, _, _ in got] == [(1, 25.0), (2, 20.0)]
    assert got[1][2] == pytest.approx(10.5 + 0.025**2 * 0.1 * 10.5, rel=1e-14)
    assert log[-1] == [(60.0, 45.0, 15.0)]


def test_no_volume_no_fill(make):
    b = make.bundle(DATES, data([1000.0, 0.0, 0.0, 400.0, 1000.0]))
    res = run_algorithm(placer([(12, {})]), b, commission=NoCommission(), slippage=ZIPLINE)
    # bars 1-2 traded nothing; bar 3: cap 10; bar 4: the last 2
    assert [(bar, q) for bar, q, _, _ in fills(res)] == [(3, 10.0), (4, 2.0)]


def test_fractional_shares_under_a_volume_cap(bundle):
    # cap 25 at bar 1; 30.5 shares ordered: 25 then 5.5 at bar 2
    res = run_algorithm(placer([(30.5, {})]), bundle, commission=NoCommission(), slippage=ZIPLINE,
                        fractional_shares=True)
    assert [(b, q) for b, q, _, _ in fills(res)] == [(1, 25.0), (2, 5.5)]
    assert res.positions[-1, 0] == 30.5


@pytest.mark.parametrize("kwargs", [{"volume_limit": 0}, {"volume_limit": 1.5}, {"price_impact": -0.1},
                                    {"volume_limit": "a lot"}])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(StrategyError):
        VolumeShareSlippage(**kwargs)


def test_set_slippage_in_initialize(bundle):
    class Capped(TradingAlgorithm):
        def initialize(self) -> None:
            self.set_slippage(VolumeShareSlippage())

        def handle_data(self, data) -> None:
            if data.bar_index == 0:
                self.order(self.symbol("AAA"), 60)

    res = run_algorithm(Capped, bundle, commission=NoCommission())
    assert res.transactions["amount"].to_list() == [25.0, 20.0, 15.0]


def test_vector_engine_refuses_a_volume_cap(bundle):
    from rustybt_ray.vector import VectorStrategy, run_vector

    class Hold(VectorStrategy):
        def weights(self):
            return np.full((len(self.calendar), self.n_assets), 0.5)

    with pytest.raises(RustyBTError, match="run_algorithm"):
        run_vector(Hold, bundle, slippage=ZIPLINE)


def test_vector_engine_refuses_fractional_shares_and_the_event_engine_runs_them(bundle):
    from rustybt_ray.vector import VectorStrategy, run_vector, run_vector_batch

    class Hold(VectorStrategy):
        def weights(self):
            return np.full((len(self.calendar), self.n_assets), 0.5)

    for call in (lambda: run_vector(Hold, bundle, fractional_shares=True),
                 lambda: run_vector_batch(Hold, bundle, params_list=[None], fractional_shares=True)):
        with pytest.raises(StrategyError, match="whole shares only.*run_algorithm"):
            call()
    # The same weights in fractions through the event engine: 0.5 of 1,001 sized at the open of 10.
    res = run_algorithm(Hold, bundle, capital_base=1_001.0, commission=NoCommission(), fractional_shares=True,
                        slippage=ZIPLINE.__class__(volume_limit=1.0, price_impact=0.0))
    assert res.transactions["amount"][0] == pytest.approx(50.05, abs=1e-6)
