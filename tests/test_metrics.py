"""Tests of rustybt_ray.metrics: hand-computed examples, an independent
pure-Python reference on random series, the round-trip ledger, degenerate input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rustybt_ray.metrics import (
    METRIC_DIRECTIONS,
    RoundTrips,
    _round_trips_loop,
    _round_trips_vec,
    compute_metrics,
    returns_from_values,
    round_trips,
)

NAN_OK = math.isnan


# ---------------------------------------------------------------- hand example

# capital 100, 7 bars, returns  +10%, -10%, 0, +5%, +20%, -25%, +14%:
#   pv = 110, 99, 99, 103.95, 124.74, 93.555, 106.6527
PV = np.array([110.0, 99.0, 99.0, 103.95, 124.74, 93.555, 106.6527])
# With periods_per_year = 7 the run is exactly one year, so CAGR = total return.
PPY = 7.0


def test_hand_example_returns_and_drawdown() -> None:
    m = compute_metrics(PV, 100.0, PPY)
    np.testing.assert_allclose(
        returns_from_values(PV, 100.0), [0.1, -0.1, 0.0, 0.05, 0.2, -0.25, 0.14], atol=1e-14
    )
    # 106.6527 / 100 - 1
    assert m["total_return"] == pytest.approx(0.066527, abs=1e-12)
    assert m["cagr"] == pytest.approx(0.066527, abs=1e-12)
    # Peak 124.74 at bar 4, trough 93.555 at bar 5: 93.555/124.74 = 0.75.
    assert m["max_drawdown"] == pytest.approx(0.25, abs=1e-12)
    # Below the 110 peak on bars 1, 2, 3 (99, 99, 103.95) = 3 bars; the deeper
    # dip below 124.74 lasts only bars 5, 6 = 2 bars (unrecovered at the end).
    assert m["max_drawdown_duration"] == 3.0
    assert m["calmar"] == pytest.approx(0.066527 / 0.25, abs=1e-12)
    assert m["final_value"] == 106.6527
    assert m["n_bars"] == 7.0


def test_hand_example_sharpe_sortino_vol() -> None:
    m = compute_metrics(PV, 100.0, PPY)
    # mean = (0.1 - 0.1 + 0 + 0.05 + 0.2 - 0.25 + 0.14) / 7 = 0.14 / 7 = 0.02
    # deviations 0.08, -0.12, -0.02, 0.03, 0.18, -0.27, 0.12; squares sum
    # 0.0064+0.0144+0.0004+0.0009+0.0324+0.0729+0.0144 = 0.1418; var = 0.1418/6
    sd = math.sqrt(0.1418 / 6)
    assert m["annual_volatility"] == pytest.approx(sd * math.sqrt(7), abs=1e-12)
    assert m["sharpe"] == pytest.approx(0.02 / sd * math.sqrt(7), abs=1e-12)
    # downside: only -0.1 and -0.25 -> (0.01 + 0.0625) / 7 bars
    dd = math.sqrt(0.0725 / 7)
    assert m["sortino"] == pytest.approx(0.02 / dd * math.sqrt(7), abs=1e-12)


def test_hand_example_risk_free_rate() -> None:
    # rf chosen so the per-bar rate is exactly 1%: (1.01)**7 - 1 per year.
    m = compute_metrics(PV, 100.0, PPY, risk_free_rate=1.01**7 - 1)
    sd = math.sqrt(0.1418 / 6)  # volatility ignores rf
    assert m["sharpe"] == pytest.approx(0.01 / sd * math.sqrt(7), abs=1e-12)
    # excess returns 0.09, -0.11, -0.01, 0.04, 0.19, -0.26, 0.13; downside
    # 0.0121 + 0.0001 + 0.0676 = 0.0798 over 7 bars
    assert m["sortino"] == pytest.approx(0.01 / math.sqrt(0.0798 / 7) * math.sqrt(7), abs=1e-12)


def test_hand_example_activity() -> None:
    traded = np.array([100.0, 0, 0, 50.0, 0, 0, 50.0])
    gross = np.array([0.0, 50.0, 50.0, 0.0, 100.0, 100.0, 0.0])
    m = compute_metrics(PV, 100.0, PPY, traded_value=traded, gross_exposure=gross, n_transactions=3)
    # sum(pv) = 736.8977, mean = 736.8977/7; one year -> turnover = 200 / mean
    assert m["turnover"] == pytest.approx(200.0 * 7 / 736.8977, rel=1e-12)
    assert m["exposure"] == pytest.approx(4 / 7, abs=1e-15)
    lev = (50 / 99 + 50 / 99 + 100 / 124.74 + 100 / 93.555) / 7
    assert m["avg_gross_leverage"] == pytest.approx(lev, rel=1e-12)
    assert m["n_transactions"] == 3.0
    # Same curve at 2 years: turnover halves, CAGR is the square root.
    m2 = compute_metrics(PV, 100.0, 3.5, traded_value=traded)
    assert m2["turnover"] == pytest.approx(100.0 * 7 / 736.8977, rel=1e-12)
    assert m2["cagr"] == pytest.approx(math.sqrt(1.066527) - 1, rel=1e-12)


# ------------------------------------------------- independent reference


def ref_metrics(values: list[float], cb: float, ppy: float, rf: float) -> dict[str, float]:
    """Readable loop implementation, independent of the vectorized code."""
    rets = []
    prev = cb
    for v in values:
        rets.append(v / prev - 1)
        prev = v
    n = len(rets)
    rf_bar = (1 + rf) ** (1 / ppy) - 1
    mean_r = sum(rets) / n
    mean_x = sum(r - rf_bar for r in rets) / n
    var = sum((r - mean_r) ** 2 for r in rets) / (n - 1)
    down = sum(min(r - rf_bar, 0.0) ** 2 for r in rets) / n
    peak, mdd, run, longest = cb, 0.0, 0, 0
    for v in values:
        peak = max(peak, v)
        mdd = max(mdd, (peak - v) / peak)
        run = run + 1 if v < peak else 0
        longest = max(longest, run)
    return {
        "std": math.sqrt(var),
        "down": math.sqrt(down),
        "annual_volatility": math.sqrt(var) * math.sqrt(ppy),
        "sharpe": mean_x / math.sqrt(var) * math.sqrt(ppy) if var > 0 else math.nan,
        "sortino": mean_x / math.sqrt(down) * math.sqrt(ppy) if down > 0 else math.nan,
        "max_drawdown": mdd,
        "max_drawdown_duration": float(longest),
    }


@settings(max_examples=200, deadline=None)
@given(
    rets=st.lists(st.floats(-0.9, 1.0, allow_nan=False), min_size=2, max_size=300),
    ppy=st.sampled_from([1.0, 12.0, 52.0, 252.0, 365.0, 98280.0]),
    rf=st.floats(0.0, 0.1),
    cb=st.floats(1.0, 1e7),
)
def test_against_reference(rets: list[float], ppy: float, rf: float, cb: float) -> None:
    values, v = [], cb
    for r in rets:
        v *= 1 + r
        values.append(v)
    ref = ref_metrics(values, cb, ppy, rf)
    assume(ref["std"] > 1e-9 and ref["down"] > 1e-9)  # away from the NaN guard
    got = compute_metrics(np.array(values), cb, ppy, risk_free_rate=rf)
    # rel 1e-9; the tiny abs term only matters when a ratio is ~0 and both
    # sides are summing cancelling terms in a different order.
    for key in ("annual_volatility", "sharpe", "sortino", "max_drawdown"):
        assert math.isclose(got[key], ref[key], rel_tol=1e-9, abs_tol=1e-12), key
    assert got["max_drawdown_duration"] == ref["max_drawdown_duration"]


# ------------------------------------------------------------- round trips


def ledger() -> RoundTrips:
    rows = [  # bar, asset, amount, price, commission
        (0, 0, 10, 100.0, 1.0),  # A: open long 10
        (1, 1, 10, 50.0, 1.0),  # C: open long 10
        (2, 0, 10, 110.0, 1.0),  # A: add -> 20
        (3, 0, -5, 120.0, 0.5),  # A: partial close -> 15
        (4, 1, -15, 60.0, 3.0),  # C closes (10 sh, comm 2), D opens short 5 (comm 1)
        (5, 0, -15, 115.0, 1.5),  # A: closes
        (6, 0, -4, 118.0, 0.4),  # B: open short 4
        (7, 0, 4, 120.0, 0.4),  # B: close
        (8, 1, 5, 64.0, 0.5),  # D: close short
        (8, 2, 3, 10.0, 0.1),  # E: open long, never closed
    ]
    cols = list(zip(*rows))
    return round_trips(
        np.array(cols[0], dtype=np.int64),
        np.array(cols[1], dtype=np.int64),
        np.array(cols[2], dtype=np.float64),
        np.array(cols[3], dtype=np.float64),
        np.array(cols[4], dtype=np.float64),
    )


def test_round_trip_ledger() -> None:
    t = ledger()
    # In order of closing: C (bar 4), A (bar 5), B (bar 7), D (bar 8).
    # C: -500 + 10*60 - 1 - 3*10/15                      = 97.00
    # A: -1000 - 1100 + 600 + 1725 - (1 + 1 + 0.5 + 1.5)  = 221.00
    # B: +472 - 480 - 0.8                                = -8.80
    # D: +5*60 - 5*64 - 3*5/15 - 0.5                     = -21.50
    assert t.asset.tolist() == [1, 0, 0, 1]
    assert t.open_bar.tolist() == [1, 0, 6, 4]
    assert t.close_bar.tolist() == [4, 5, 7, 8]
    assert t.direction.tolist() == [1, 1, -1, -1]
    np.testing.assert_allclose(t.pnl, [97.0, 221.0, -8.8, -21.5], atol=0.005)
    np.testing.assert_allclose(t.pnl, [97.0, 221.0, -8.8, -21.5], atol=1e-9)
    assert t.n_open == 1 and len(t) == 4
    for a in (t.asset, t.open_bar, t.close_bar, t.direction):
        assert a.dtype == np.int64
    with pytest.raises(AttributeError):
        t.n_open = 0  # type: ignore[misc]

    m = compute_metrics(PV, 100.0, PPY, trips=t, n_transactions=10)
    assert m["n_trades"] == 4.0
    assert m["win_rate"] == 0.5
    assert m["avg_trade_pnl"] == pytest.approx((97 + 221 - 8.8 - 21.5) / 4, abs=1e-9)
    assert m["profit_factor"] == pytest.approx(318.0 / 30.3, rel=1e-12)


def test_round_trip_fractional_shares_close_exactly() -> None:
    # 0.1 + 0.1 + 0.1 != 0.3 in floats; the trip must still close.
    t = round_trips(
        np.array([0, 1, 2, 3]),
        np.array([7, 7, 7, 7]),
        np.array([0.1, 0.1, 0.1, -0.3]),
        np.array([10.0, 10.0, 10.0, 20.0]),
        np.zeros(4),
    )
    assert t.n_open == 0 and len(t) == 1
    assert t.pnl[0] == pytest.approx(3.0, abs=1e-9)


def test_round_trip_short_to_long_flip_and_empty() -> None:
    t = round_trips(
        np.array([0, 1, 2]),
        np.array([0, 0, 0]),
        np.array([-2.0, 6.0, -4.0]),
        np.array([10.0, 8.0, 9.0]),
        np.array([0.0, 0.6, 0.0]),
    )
    # short 2 @10 covered @8: +4 - 0.6*2/6 = 3.8; long 4 @8 sold @9: +4 - 0.4 = 3.6
    np.testing.assert_allclose(t.pnl, [3.8, 3.6], atol=1e-12)
    assert t.direction.tolist() == [-1, 1] and t.n_open == 0
    empty = np.array([])
    e = round_trips(empty, empty, empty, empty, empty)
    assert len(e) == 0 and e.n_open == 0
    m = compute_metrics(PV, 100.0, PPY, trips=e)
    assert m["n_trades"] == 0.0
    assert all(NAN_OK(m[k]) for k in ("win_rate", "avg_trade_pnl", "profit_factor"))
    with pytest.raises(ValueError):
        round_trips(np.array([0]), np.array([0, 1]), np.array([1.0]), np.array([1.0]), np.array([0.0]))


@st.composite
def tx_streams(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """Time-ordered whole-share fills on a few assets, rich in exact closes,
    flips, partial closes, adds and zero fills (also while flat)."""
    ids = draw(st.sampled_from([[0, 1, 2, 3], [5], [3, 70_000, -2], [7, 1]]))
    n = draw(st.integers(0, 60))
    pos = dict.fromkeys(ids, 0)
    rows, bar = [], 0
    for _ in range(n):
        bar += draw(st.integers(0, 2))
        a = draw(st.sampled_from(ids))
        kind = draw(st.sampled_from(["close", "flip", "partial", "add", "zero", "any"]))
        held = pos[a]
        k = draw(st.integers(1, 40))
        if kind == "close":
            q = -held
        elif kind == "flip":
            q = -held - (k if held >= 0 else -k)
        elif kind == "partial":
            q = -(held // 2) if abs(held) > 1 else -held
        elif kind == "add":
            q = k if held >= 0 else -k
        elif kind == "zero":
            q = 0
        else:
            q = draw(st.integers(-40, 40))
        pos[a] = held + q
        price = draw(st.floats(0.01, 1000.0, allow_nan=False))
        comm = draw(st.sampled_from([0.0, 1.0, 0.35])) * draw(st.floats(0.0, 3.0))
        rows.append((bar, a, float(q), price, comm))
    cols = list(zip(*rows)) if rows else [[]] * 5
    return (
        np.array(cols[0], dtype=np.int64),
        np.array(cols[1], dtype=np.int64),
        np.array(cols[2], dtype=np.float64),
        np.array(cols[3], dtype=np.float64),
        np.array(cols[4], dtype=np.float64),
    )


@settings(max_examples=300, deadline=None)
@given(tx=tx_streams())
def test_round_trips_vectorized_matches_loop(tx: tuple[np.ndarray, ...]) -> None:
    got = _round_trips_vec(*tx)
    assert got is not None  # whole shares always take the vectorized path
    ref = _round_trips_loop(*tx)
    for name in ("asset", "open_bar", "close_bar", "direction"):
        g, r = getattr(got, name), getattr(ref, name)
        assert g.dtype == np.int64 and g.tolist() == r.tolist(), name
    assert got.pnl.dtype == np.float64 and len(got) == len(ref)
    for g, r in zip(got.pnl.tolist(), ref.pnl.tolist()):
        assert math.isclose(g, r, rel_tol=1e-9, abs_tol=1e-9), (g, r)
    assert got.n_open == ref.n_open
    pub = round_trips(*tx)
    assert pub.pnl.tolist() == got.pnl.tolist() and pub.n_open == got.n_open


def test_round_trips_vectorized_falls_back_when_inexact() -> None:
    bar = np.array([0, 1, 2])
    asset = np.array([0, 0, 0])
    price = np.array([1.0, 1.0, 2.0])
    comm = np.zeros(3)
    # 2e10 - (2e10 - 1) = 1 share: within 1e-9 relative of flat, so the loop
    # snaps it to 0 and closes the trip; the vectorized path must defer.
    big = np.array([2e10, -(2e10 - 1), 5.0])
    assert _round_trips_vec(bar, asset, big, price, comm) is None
    t = round_trips(bar, asset, big, price, comm)
    assert len(t) == 1 and t.n_open == 1 and t.close_bar.tolist() == [1]
    # Fractional shares, NaN amounts, float ids with NaN: the loop handles them.
    frac = np.array([0.5, 0.5, -1.0])
    assert _round_trips_vec(bar, asset, frac, price, comm) is None
    assert len(round_trips(bar, asset, frac, price, comm)) == 1
    assert _round_trips_vec(bar, asset, np.array([1.0, np.nan, 1.0]), price, comm) is None
    assert _round_trips_vec(np.array([0.0, np.nan, 1.0]), asset, np.ones(3), price, comm) is None
    # Integer-typed amounts and float (whole) bar/asset ids stay vectorized.
    ints = np.array([3, -5, 2])
    got = _round_trips_vec(bar.astype(float), asset.astype(float), ints, price, comm)
    ref = _round_trips_loop(bar, asset, ints, price, comm)
    assert got is not None and got.pnl.tolist() == ref.pnl.tolist()
    assert got.direction.tolist() == ref.direction.tolist() == [1, -1]


# -------------------------------------------------------------- degenerate


@pytest.fixture(autouse=True)
def _no_warnings():
    # Degenerate inputs must not even emit RuntimeWarnings (divide by zero ...).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_directions_cover_all_keys() -> None:
    assert set(compute_metrics(PV, 100.0, PPY)) == set(METRIC_DIRECTIONS)
    assert set(METRIC_DIRECTIONS.values()) <= {"maximize", "minimize", "none"}
    assert METRIC_DIRECTIONS["max_drawdown"] == "minimize"
    assert METRIC_DIRECTIONS["sharpe"] == "maximize"


def test_empty() -> None:
    m = compute_metrics(np.array([]), 100.0, 252.0, gross_exposure=np.array([]), traded_value=np.array([]))
    assert set(m) == set(METRIC_DIRECTIONS)
    assert m["n_bars"] == 0.0 and m["n_transactions"] == 0.0
    assert all(NAN_OK(v) for k, v in m.items() if k not in ("n_bars", "n_transactions"))
    assert all(isinstance(v, float) for v in m.values())


def test_one_bar() -> None:
    m = compute_metrics(np.array([110.0]), 100.0, 252.0)
    assert m["total_return"] == pytest.approx(0.1)
    assert m["cagr"] == pytest.approx(1.1**252 - 1)
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_duration"] == 0.0
    for k in ("annual_volatility", "sharpe", "sortino", "calmar"):
        assert NAN_OK(m[k]), k


def test_constant_equity() -> None:
    m = compute_metrics(np.full(50, 100.0), 100.0, 252.0, gross_exposure=np.zeros(50))
    assert m["total_return"] == 0.0 and m["cagr"] == 0.0 and m["annual_volatility"] == 0.0
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_duration"] == 0.0
    assert m["exposure"] == 0.0 and m["avg_gross_leverage"] == 0.0
    for k in ("sharpe", "sortino", "calmar"):
        assert NAN_OK(m[k]), k
    # Constant positive growth: std is float noise, not risk -> NaN, not 1e15.
    grow = 100.0 * 1.01 ** np.arange(1, 40)
    g = compute_metrics(grow, 100.0, 252.0)
    assert NAN_OK(g["sharpe"]) and NAN_OK(g["sortino"])
    assert g["max_drawdown"] == 0.0


def test_equity_hits_zero() -> None:
    pv = np.array([50.0, 0.0, 0.0])
    np.testing.assert_array_equal(returns_from_values(pv, 100.0), [-0.5, -1.0, 0.0])
    m = compute_metrics(pv, 100.0, 252.0, gross_exposure=np.array([50.0, 0.0, 0.0]),
                        traded_value=np.array([100.0, 50.0, 0.0]))
    assert m["total_return"] == -1.0 and m["cagr"] == -1.0
    assert m["max_drawdown"] == 1.0 and m["max_drawdown_duration"] == 3.0
    assert m["avg_gross_leverage"] == 1.0  # only the bar with equity > 0
    assert math.isfinite(m["sharpe"]) and m["sharpe"] < 0
    # Off zero again: the return on zero capital is undefined -> NaN ratios.
    m2 = compute_metrics(np.array([50.0, 0.0, 10.0]), 100.0, 252.0)
    assert NAN_OK(m2["sharpe"]) and NAN_OK(m2["annual_volatility"])
    assert m2["max_drawdown"] == 1.0
    # Negative equity and a zero capital base do not raise.
    m3 = compute_metrics(np.array([50.0, -10.0]), 100.0, 252.0)
    assert NAN_OK(m3["cagr"]) and m3["max_drawdown"] == pytest.approx(1.1)
    m4 = compute_metrics(np.array([0.0, 0.0]), 0.0, 252.0, traded_value=np.zeros(2))
    assert NAN_OK(m4["total_return"]) and NAN_OK(m4["turnover"])


def test_cagr_overflow_is_inf() -> None:
    # +50% over 2 minute bars, annualised: 1.5 ** 49140 overflows a float.
    m = compute_metrics(np.array([200.0, 150.0]), 100.0, 98280.0)
    assert m["cagr"] == math.inf and m["total_return"] == 0.5
    assert m["calmar"] == math.inf


def test_gross_exposure_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        compute_metrics(PV, 100.0, PPY, gross_exposure=np.ones(3))
