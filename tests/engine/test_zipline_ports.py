"""The zipline example ports (``dual_moving_average``, ``buyapple``) against hand ledgers and NumPy references.

The references use only the bundle's raw open/close arrays (prices forward-filled
here) and the engine's documented fill rule: an order placed at bar t fills whole at
the next bar's open, at ``open * (1 +- 5 bps)`` (the default slippage), paying the
examples' ``PerShare(cost=0.0075, min_trade_cost=1.0)`` commission.
"""

from __future__ import annotations

import numpy as np
import pytest

from rustybt_ray.engine import run_algorithm
from rustybt_ray.errors import RustyBTError, SymbolNotFoundError
from rustybt_ray.examples.buy_apple import BuyAndHold, BuyApple
from rustybt_ray.examples.dual_moving_average import DualMovingAverage

CAPITAL = 100_000.0
BPS = 5.0 / 10_000.0
DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]


def _ffill(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    for t in range(1, len(out)):
        if np.isnan(out[t]):
            out[t] = out[t - 1]
    return out


def _commission(amount: float) -> float:
    return max(1.0, abs(amount) * 0.0075)


def _fixed_bps(open_: np.ndarray, t: int, q: float) -> float:
    return open_[t] * (1.0 + (BPS if q > 0 else -BPS))


def reference_dual_ma(open_: np.ndarray, price: np.ndarray, i0: int, i1: int, short: int, long: int,
                      shares: float = 100.0, fill_price=_fixed_bps):
    """Expected fills ``(bar, amount, price, commission)``, the averages by bar and the final cash.

    ``fill_price(open_, t, amount)`` is the execution price of an order filled at bar t.
    """
    fills, averages = [], {}
    held = 0.0  # shares held plus on order
    order = None  # (amount) waiting for the next bar
    cash = CAPITAL
    for i, t in enumerate(range(i0, i1), start=1):
        if order is not None:
            px = fill_price(open_, t, order)
            fills.append((t, order, px, _commission(order)))
            cash -= order * px + _commission(order)
            order = None
        if i < long:
            continue
        s = np.nanmean(price[max(t - short + 1, 0):t + 1])
        lng = np.nanmean(price[max(t - long + 1, 0):t + 1])
        averages[t] = (s, lng)
        target = shares if s > lng else (0.0 if s < lng else held)
        if target != held:
            order = target - held
            held = target
    return fills, averages, cash


@pytest.fixture(scope="module")
def aapl(demo_bundle):
    a = demo_bundle.symbols.index("AAPL")
    open_, close = np.array(demo_bundle.open)[:, a], np.array(demo_bundle.close)[:, a]
    assert not np.isnan(open_).any()  # every order fills at the next bar, as the references assume
    return open_, _ffill(close)


@pytest.mark.parametrize("start,end,short,long", [
    (None, None, 100, 300),                  # the example's windows, the whole demo history
    ("2011-01-01", "2013-01-01", 100, 300),  # zipline's own test window for the example
    (None, None, 20, 60),                    # the windows are parameters
])
def test_dual_moving_average_trades_match_numpy_smas(demo_bundle, aapl, start, end, short, long):
    b = demo_bundle
    open_, price = aapl
    result = run_algorithm(DualMovingAverage, b, start, end, capital_base=CAPITAL,
                           params={"short_window": short, "long_window": long})
    i0, i1 = b.index_range(start, end)
    fills, averages, cash = reference_dual_ma(open_, price, i0, i1, short, long)
    s, lng = np.array(list(averages.values())).T
    assert np.min(np.abs(s - lng) / lng) > 1e-9  # no crossing so close that rounding could flip it

    tx = result.transactions
    assert tx["symbol"].to_list() == ["AAPL"] * len(fills)
    np.testing.assert_array_equal(tx["date"].to_numpy(), b.calendar[[f[0] for f in fills]])
    np.testing.assert_array_equal(tx["amount"].to_numpy(), [f[1] for f in fills])
    np.testing.assert_allclose(tx["price"].to_numpy(), [f[2] for f in fills], rtol=1e-15)
    np.testing.assert_array_equal(tx["commission"].to_numpy(), [1.0] * len(fills))  # 100 x 0.0075 < $1
    assert set(tx["amount"].to_list()) <= {100.0, -100.0}
    # The strategy really trades: both ways over the whole history; zipline's 2011-2012 window
    # (about 200 bars after the 300-bar warm-up) holds one up-trend, so one buy.
    assert len(fills) >= (1 if start else 6)
    assert start or {-100.0, 100.0} <= set(tx["amount"].to_list())

    bars = result.bars
    assert bars["cash"][-1] == pytest.approx(cash, rel=1e-12)
    held = float(np.sum([f[1] for f in fills]))
    assert result.final_value == pytest.approx(cash + held * price[i1 - 1], rel=1e-12)
    active = np.array(list(averages)) - i0
    np.testing.assert_allclose(bars["short_mavg"].to_numpy()[active], s, rtol=1e-12)
    np.testing.assert_allclose(bars["long_mavg"].to_numpy()[active], lng, rtol=1e-12)
    np.testing.assert_array_equal(bars["AAPL"].to_numpy()[active], price[active + i0])
    assert np.isnan(bars["short_mavg"].to_numpy()[: long - 1]).all()  # nothing recorded while warming up


def test_dual_moving_average_with_zipline_volume_share_slippage(demo_bundle, aapl):
    """zipline's exact set-up: ``VolumeShareSlippage()`` (2.5% volume cap, impact 0.1 x share squared)."""
    from rustybt_ray import engine

    if not hasattr(engine, "VolumeShareSlippage"):
        pytest.skip("this engine has no VolumeShareSlippage")
    b = demo_bundle
    open_, price = aapl
    volume = np.array(b.volume)[:, b.symbols.index("AAPL")]
    assert (100 <= 0.025 * volume).all()  # 100 shares always fit under the cap: every order fills whole

    def volume_share(o: np.ndarray, t: int, q: float) -> float:
        share = abs(q) / volume[t]
        return o[t] + share * share * (0.1 if q > 0 else -0.1) * o[t]

    result = run_algorithm(DualMovingAverage, b, capital_base=CAPITAL, slippage=engine.VolumeShareSlippage())
    fills, _, cash = reference_dual_ma(open_, price, 0, len(open_), 100, 300, fill_price=volume_share)
    tx = result.transactions
    np.testing.assert_array_equal(tx["date"].to_numpy(), b.calendar[[f[0] for f in fills]])
    np.testing.assert_array_equal(tx["amount"].to_numpy(), [f[1] for f in fills])
    np.testing.assert_allclose(tx["price"].to_numpy(), [f[2] for f in fills], rtol=1e-15)
    assert (tx["price"].to_numpy() != np.array([open_[f[0]] for f in fills])).all()  # the impact was applied
    assert result.bars["cash"][-1] == pytest.approx(cash, rel=1e-12)
    assert len(fills) >= 6


def test_buy_apple_by_hand(make):
    """Four bars: an order of 10 at every bar, each filled at the next open (+5 bps), $1 commission each."""
    b = make.bundle(DATES, {"AAPL": {"open": [10, 11, 12, 13], "close": [10.5, 11.5, 12.5, 13.5]}})
    r = run_algorithm(BuyApple, b, capital_base=CAPITAL)
    tx = r.transactions
    assert tx["amount"].to_list() == [10.0, 10.0, 10.0]  # the 4th order is still open at the end
    np.testing.assert_allclose(tx["price"].to_numpy(), [11.0055, 12.006, 13.0065], rtol=1e-15)
    assert tx["commission"].to_list() == [1.0, 1.0, 1.0]  # max($1, 10 x 0.0075)
    # cash: 100000 - 111.055 = 99888.945; - 121.06 = 99767.885; - 131.065 = 99636.82
    np.testing.assert_allclose(r.bars["cash"].to_numpy(), [100_000.0, 99_888.945, 99_767.885, 99_636.82],
                               rtol=1e-13)
    np.testing.assert_array_equal(r.positions[:, 0], [0.0, 10.0, 20.0, 30.0])
    # value: cash + shares x close: 99888.945 + 115 = 100003.945, ... 99636.82 + 405 = 100041.82
    np.testing.assert_allclose(r.portfolio_value, [100_000.0, 100_003.945, 100_017.885, 100_041.82], rtol=1e-13)
    assert r.bars["AAPL"].to_list() == [10.5, 11.5, 12.5, 13.5]


def test_buy_apple_on_the_demo_bundle_matches_numpy(demo_bundle, aapl):
    open_, price = aapl
    r = run_algorithm(BuyApple, demo_bundle, capital_base=CAPITAL)
    T = len(open_)
    spent = np.r_[0.0, np.cumsum(10 * (open_[1:] * (1 + BPS)) + 1.0)]
    # atol: the cash crosses zero, where a relative bound means nothing
    np.testing.assert_allclose(r.bars["cash"].to_numpy(), CAPITAL - spent, rtol=1e-10, atol=1e-6)
    shares = 10.0 * np.arange(T)
    np.testing.assert_array_equal(r.positions[:, demo_bundle.symbols.index("AAPL")], shares)
    np.testing.assert_allclose(r.portfolio_value, CAPITAL - spent + shares * price, rtol=1e-10, atol=1e-6)
    assert r.transactions.height == T - 1
    assert r.bars["cash"][-1] < 0  # no buying-power check, as in zipline


def test_buy_and_hold_by_hand(make):
    b = make.bundle(DATES, {"AAPL": {"open": [10, 11, 12, 13], "close": [10.5, 11.5, 12.5, 13.5]}})
    r = run_algorithm(BuyAndHold, b, capital_base=CAPITAL)
    # 100000 / 10.5 = 9523.8 -> 9523 shares, filled at 11 x 1.0005 = 11.0055, commission 9523 x 0.001
    cash = 100_000.0 - 9523 * 11.0055 - 9.523
    assert r.transactions["amount"].to_list() == [9523.0]
    np.testing.assert_allclose(r.bars["cash"].to_numpy(), [100_000.0, cash, cash, cash], rtol=1e-13)
    np.testing.assert_allclose(r.portfolio_value, [100_000.0, cash + 9523 * 11.5, cash + 9523 * 12.5,
                                                   cash + 9523 * 13.5], rtol=1e-13)


def test_buy_and_hold_waits_for_the_first_bar(make):
    nan = float("nan")
    b = make.bundle(DATES, {"AAPL": {"open": [nan, nan, 12, 13], "close": [nan, nan, 12.5, 13.5]},
                            "MSFT": {"open": [1, 1, 1, 1], "close": [1, 1, 1, 1]}})
    r = run_algorithm(BuyAndHold, b, capital_base=CAPITAL, params={"weight": 0.5})
    assert r.transactions["date"].to_list()[0].isoformat()[:10] == "2024-01-05"
    assert r.transactions["amount"].to_list() == [float(int(50_000 / 12.5))]


def test_unknown_ticker_is_a_typed_error(demo_bundle):
    with pytest.raises(SymbolNotFoundError, match="ZZZZ") as info:
        run_algorithm(DualMovingAverage, demo_bundle, params={"ticker": "ZZZZ"})
    assert isinstance(info.value, RustyBTError)
