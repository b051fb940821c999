"""Deflated Sharpe Ratio and Probability of Backtest Overfitting (CSCV)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rustybt_ray.errors import OverfittingError, RustyBTError
from rustybt_ray.optimize.overfitting import (
    EULER_GAMMA,
    DeflatedSharpe,
    deflated_sharpe_from_trials,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    overfitting_report,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)

PHI = NormalDist()
LN3 = math.log(3.0)


def _noise(seed: int, bars: int = 1000, trials: int = 200) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, (bars, trials))


# --------------------------------------------------------------------------- DSR


def test_paper_numerical_example() -> None:
    """Bailey & López de Prado (2014), section "A numerical example".

    Best of N = 100 trials, annualised SR = 2.5 over T = 1250 daily bars,
    variance of the trials' annualised SRs V = 1/2, skew -3, kurtosis 10,
    250 bars a year.  Per bar: SR = 2.5 / sqrt(250) = 0.158114 and
    V = 0.5 / 250 = 0.002, sqrt(V) = 0.044721.

    SR0 = sqrt(V) ((1 - g) Z^-1(1 - 1/100) + g Z^-1(1 - 1/(100 e)))
        = 0.044721 (0.422784 * 2.326348 + 0.577216 * 2.682073)
        = 0.044721 * 2.531681 = 0.113172   (paper: 0.1132; annualised 1.7894)

    DSR = Z((0.158114 - 0.113172) sqrt(1249)
            / sqrt(1 + 3 * 0.158114 + (10 - 1)/4 * 0.158114^2))
        = Z(0.044942 * 35.341194 / sqrt(1.530592))
        = Z(1.588283 / 1.237171) = Z(1.283816) = 0.900397   (paper: 0.9004)
    """
    sr = 2.5 / math.sqrt(250)
    v = 0.5 / 250
    sr0 = expected_max_sharpe(100, v)
    assert sr0 == pytest.approx(0.113172, abs=1e-5)
    assert abs(sr0 - 0.1132) < 1e-4
    assert sr0 * math.sqrt(250) == pytest.approx(1.7894, abs=1e-3)
    dsr = probabilistic_sharpe_ratio(sr, sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.900397, abs=1e-5)
    assert abs(dsr - 0.9004) < 1e-3
    # Rounding SR0 to the paper's 0.1132 moves the DSR by only ~1.4e-4.
    assert probabilistic_sharpe_ratio(sr, 0.1132, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=1e-3)


def test_expected_max_sharpe_matches_monte_carlo() -> None:
    """The SR0 formula approximates E[max of N iid N(0, V)] (the paper: good for large N)."""
    draws = np.random.default_rng(3).standard_normal((20_000, 100))
    mc = draws.max(axis=1).mean()  # about 2.508 for N = 100
    assert expected_max_sharpe(100, 1.0) == pytest.approx(mc, rel=0.03)
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0))


def test_expected_max_sharpe_edges() -> None:
    assert expected_max_sharpe(1, 0.7) == 0.0
    assert expected_max_sharpe(50, 0.0) == 0.0
    # Two trials: (1 - g) Z^-1(1/2) + g Z^-1(1 - 1/(2e)) with Z^-1(1/2) = 0.
    assert expected_max_sharpe(2, 1.0) == pytest.approx(EULER_GAMMA * PHI.inv_cdf(1 - 1 / (2 * math.e)))
    values = [expected_max_sharpe(n, 0.01) for n in (2, 10, 100, 10_000, 10**9)]
    assert values == sorted(values) and all(math.isfinite(v) for v in values)


def test_psr_normal_returns_is_normal_cdf_of_t_statistic() -> None:
    """Skew 0, kurtosis 3: PSR = Z((SR - SR*) sqrt(T - 1) / sqrt(1 + SR^2 / 2))."""
    for sr, bench, t in ((0.1, 0.0, 252), (0.05, 0.02, 1000), (-0.03, 0.0, 60)):
        z = (sr - bench) * math.sqrt(t - 1) / math.sqrt(1 + sr * sr / 2)
        expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))
        assert probabilistic_sharpe_ratio(sr, bench, t, 0.0, 3.0) == pytest.approx(expected, abs=1e-12)
    assert probabilistic_sharpe_ratio(0.1, 0.1, 500, 0.0, 3.0) == pytest.approx(0.5)
    # Negative skew and fat tails widen the SR's standard error: less confidence.
    assert probabilistic_sharpe_ratio(0.1, 0.0, 500, -2.0, 9.0) < probabilistic_sharpe_ratio(0.1, 0.0, 500, 0.0, 3.0)


def test_deflated_sharpe_ratio_moments_and_fields() -> None:
    r = np.random.default_rng(11).standard_t(5, 800) * 0.01 + 0.0015
    d = deflated_sharpe_ratio(r, 40, 0.002)
    dev = r - r.mean()
    assert isinstance(d, DeflatedSharpe)
    assert d.sharpe == pytest.approx(r.mean() / r.std(ddof=1))
    assert d.skew == pytest.approx(np.mean(dev**3) / np.mean(dev**2) ** 1.5)
    assert d.kurtosis == pytest.approx(np.mean(dev**4) / np.mean(dev**2) ** 2)
    assert d.n_obs == 800 and d.n_trials == 40 and d.sharpe_variance == 0.002
    assert d.expected_max_sharpe == expected_max_sharpe(40, 0.002)
    assert d.dsr == probabilistic_sharpe_ratio(d.sharpe, d.expected_max_sharpe, 800, d.skew, d.kurtosis)
    assert d.psr_zero == probabilistic_sharpe_ratio(d.sharpe, 0.0, 800, d.skew, d.kurtosis)
    assert d.dsr < d.psr_zero


def test_dsr_increases_with_fewer_trials() -> None:
    r = np.random.default_rng(5).normal(0.001, 0.01, 1000)
    dsrs = [deflated_sharpe_ratio(r, n, 0.001).dsr for n in (1000, 100, 10, 2, 1)]
    assert all(a < b for a, b in zip(dsrs, dsrs[1:]))
    single = deflated_sharpe_ratio(r, 1, 0.001)
    assert single.dsr == single.psr_zero  # nothing selected, nothing to deflate


def test_dsr_from_trials_matches_manual_and_deflates_noise() -> None:
    """The best of 200 noise trials looks significant (PSR vs 0 > 0.99) until deflated."""
    r = _noise(0)
    d = deflated_sharpe_from_trials(r)
    sharpes = r.mean(axis=0) / r.std(axis=0, ddof=1)
    best = int(np.argmax(sharpes))
    manual = deflated_sharpe_ratio(r[:, best], 200, float(np.var(sharpes, ddof=1)))
    for field in ("dsr", "psr_zero", "sharpe", "expected_max_sharpe", "sharpe_variance", "skew", "kurtosis"):
        assert getattr(d, field) == pytest.approx(getattr(manual, field), rel=1e-9)
    assert (d.n_trials, d.n_obs) == (200, 1000)
    assert d.psr_zero > 0.99
    assert d.dsr < 0.9
    other = deflated_sharpe_from_trials(r, best=3)
    assert other.sharpe == pytest.approx(sharpes[3]) and other.dsr < d.dsr


def test_dsr_from_trials_keeps_a_real_edge() -> None:
    r = _noise(7)
    r[:, 17] += 0.01 * 4 / math.sqrt(252)  # annualised Sharpe 4
    d = deflated_sharpe_from_trials(r)
    assert d.sharpe == pytest.approx(r[:, 17].mean() / r[:, 17].std(ddof=1))
    assert d.dsr > 0.99


@pytest.mark.parametrize(
    "call",
    [
        lambda: expected_max_sharpe(0, 1.0),
        lambda: expected_max_sharpe(2.5, 1.0),  # type: ignore[arg-type]
        lambda: expected_max_sharpe(True, 1.0),
        lambda: expected_max_sharpe(10, -0.1),
        lambda: expected_max_sharpe(10, float("nan")),
        lambda: probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0),
        lambda: probabilistic_sharpe_ratio(float("nan"), 0.0, 100, 0.0, 3.0),
        lambda: probabilistic_sharpe_ratio(1.0, 0.0, 100, 5.0, 1.0),  # kurtosis < skew^2 + 1
        lambda: deflated_sharpe_ratio(np.array([0.01, 0.02]), 10, 0.1),
        lambda: deflated_sharpe_ratio(np.array([0.01, np.nan, 0.02, 0.0]), 10, 0.1),
        lambda: deflated_sharpe_ratio(np.full(50, 0.01), 10, 0.1),
        lambda: deflated_sharpe_ratio(np.zeros((5, 2)), 10, 0.1),
        lambda: deflated_sharpe_ratio(np.arange(10.0), 0, 0.1),
        lambda: deflated_sharpe_ratio(np.arange(10.0), 5, -1.0),
        lambda: deflated_sharpe_from_trials(np.ones((10, 1))),
        lambda: deflated_sharpe_from_trials(_noise(1, 20, 3), best=3),
    ],
)
def test_dsr_invalid_inputs_raise(call) -> None:
    with pytest.raises(OverfittingError):
        call()


def test_dsr_errors_name_bad_columns() -> None:
    r = _noise(2, 50, 5)
    r[:, 2] = 0.0
    with pytest.raises(OverfittingError, match=r"column\(s\) 2 have constant"):
        deflated_sharpe_from_trials(r)
    r = _noise(2, 50, 5)
    r[4, 1] = np.nan
    r[9, 3] = np.inf
    with pytest.raises(OverfittingError, match=r"trial column\(s\) 1, 3"):
        deflated_sharpe_from_trials(r)
    assert issubclass(OverfittingError, RustyBTError)


# --------------------------------------------------------------------------- PBO


def _col_mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0)


def test_pbo_hand_worked_case() -> None:
    """N = 3 trials, S = 4 blocks of 2 bars, metric = mean; C(4, 2) = 6 splits.

    Block values (both bars of a block equal), trials t0, t1, t2:
        block   0  1  2  3
        t0      2  0  1  5
        t1      2  3  0  0
        t2      4  2  0  4
    An extra first bar (1000 in every trial) is dropped, since 9 mod 4 = 1.
    With equal blocks a mean ranks like a sum of block values.

      IS     IS sums (t0,t1,t2)  n*  OOS   OOS sums   OOS rank  w    logit
      {0,1}  2, 5, 6             t2  {2,3} 6, 0, 4    2         2/4  0
      {0,2}  3, 2, 4             t2  {1,3} 5, 3, 6    3         3/4  ln 3
      {0,3}  7, 2, 8             t2  {1,2} 1, 3, 2    2         2/4  0
      {1,2}  1, 3, 2             t1  {0,3} 7, 2, 8    1         1/4  -ln 3
      {1,3}  5, 3, 6             t2  {0,2} 3, 2, 4    3         3/4  ln 3
      {2,3}  6, 0, 4             t0  {0,1} 2, 5, 6    1         1/4  -ln 3

    Four logits are <= 0 (the median rank counts as overfit): PBO = 4/6.
    IS means of n*: sums / 2 = 3, 2, 4, 1.5, 3, 3; OOS: 2, 3, 1, 1, 2, 1.
    """
    table = np.array([[2, 0, 1, 5], [2, 3, 0, 0], [4, 2, 0, 4]], dtype=float)
    returns = np.vstack([np.full((1, 3), 1000.0), np.repeat(table.T, 2, axis=0)])
    res = probability_of_backtest_overfitting(returns, n_splits=4, metric=_col_mean)
    assert res.n_combinations == 6 and res.n_splits == 4 and res.n_trials == 3 and res.rows_dropped == 1
    np.testing.assert_allclose(res.logits, [0, LN3, 0, -LN3, LN3, -LN3], atol=1e-12)
    assert res.pbo == pytest.approx(4 / 6)
    np.testing.assert_allclose(res.is_performance, [3, 2, 4, 1.5, 3, 3])
    np.testing.assert_allclose(res.oos_performance, [2, 3, 1, 1, 2, 1])
    assert res.prob_oos_loss == 0.0
    # OOS on IS: mean x = 2.75, mean y = 5/3; Sxx = 3.875, Sxy = -1, Syy = 10/3.
    assert res.degradation_slope == pytest.approx(-1 / 3.875)
    assert res.degradation_intercept == pytest.approx(5 / 3 + 2.75 / 3.875)
    assert res.degradation_r2 == pytest.approx(1 / (3.875 * 10 / 3))


def test_pbo_ties_are_averaged_and_median_counts_as_overfit() -> None:
    """Two identical trials: IS tie -> first column; OOS rank (1 + 2) / 2 -> w = 1/2 -> logit 0."""
    col = np.random.default_rng(0).normal(size=16)
    res = probability_of_backtest_overfitting(np.column_stack([col, col]), n_splits=4)
    np.testing.assert_array_equal(res.logits, np.zeros(6))
    assert res.pbo == 1.0


def test_pbo_default_metric_matches_looped_sharpe() -> None:
    r = np.random.default_rng(4).normal(50.0, 0.5, (203, 9))  # a large level tests the shifted sums
    fast = probability_of_backtest_overfitting(r, n_splits=8)
    slow = probability_of_backtest_overfitting(r, n_splits=8, metric=lambda x: x.mean(0) / x.std(0, ddof=1))
    np.testing.assert_allclose(fast.is_performance, slow.is_performance, rtol=1e-9)
    np.testing.assert_allclose(fast.oos_performance, slow.oos_performance, rtol=1e-9)
    np.testing.assert_array_equal(fast.logits, slow.logits)
    assert fast.rows_dropped == 3 and fast.n_combinations == 70


def test_pbo_iid_noise_is_one_half_on_average() -> None:
    """Skill-less iid trials: E[PBO] = 1/2, not 1.

    IS and OOS blocks are disjoint, so the OOS scores are independent of the
    IS selection and exchangeable across trials: the selected trial's OOS rank
    is uniform on 1..N and P(logit <= 0) = P(rank <= N/2) = 1/2 for even N.
    One matrix scatters around that (its splits share the same data; the
    standard deviation is about 0.15 for 200 trials x 1000 bars), so PBO is
    averaged over 48 seeded matrices of 200 trials x 1000 bars of iid N(0, 1%)
    returns with S = 16, each on a seeded sample of 1000 of its 12,870 splits
    (for speed; it adds little to the between-matrix scatter).  The mean's
    standard error is about 0.02; the tolerance is 3 of them.  The selected
    trial's IS Sharpe is large while its OOS Sharpe averages zero: pure
    selection luck.
    """
    pbos, is_sr, oos_sr = [], [], []
    for seed in range(48):
        res = probability_of_backtest_overfitting(_noise(seed), n_splits=16, max_combinations=1000, seed=seed)
        pbos.append(res.pbo)
        is_sr.append(res.is_performance.mean())
        oos_sr.append(res.oos_performance.mean())
    assert abs(np.mean(pbos) - 0.5) < 0.06
    assert np.std(pbos) > 0.05  # per-matrix PBO is genuinely noisy
    assert np.mean(is_sr) > 0.1  # ~2.8 standard errors of a 500-bar Sharpe
    assert abs(np.mean(oos_sr)) < 0.01


def test_pbo_near_one_when_is_gains_are_paid_back_oos() -> None:
    """Guaranteed overfitting: every trial is iid noise minus its own full-sample mean.

    Each trial's total return is then exactly zero, so IS sum = -OOS sum: the
    IS winner is, by construction, near the bottom OOS (the "compensation" or
    memory effect that makes overfitting worse than useless).  PBO -> 1 and the
    OOS-on-IS degradation slope is strongly negative.
    """
    r = _noise(1)
    r -= r.mean(axis=0)
    res = probability_of_backtest_overfitting(r, n_splits=16)
    assert res.pbo > 0.9
    assert res.prob_oos_loss > 0.9
    assert res.degradation_slope < -0.5 and res.degradation_r2 > 0.5


def test_pbo_low_with_planted_edge() -> None:
    """10 of 200 trials carry a genuine annualised Sharpe of 2 (per bar 2/sqrt(252))."""
    r = _noise(7)
    r[:, :10] += 0.01 * 2 / math.sqrt(252)
    res = probability_of_backtest_overfitting(r, n_splits=16)
    assert res.pbo < 0.1
    assert res.prob_oos_loss < 0.1
    assert np.mean(res.oos_performance) > 0.05
    one = _noise(8)
    one[:, 42] += 0.01 * 4 / math.sqrt(252)  # a single trial with annualised Sharpe 4
    assert probability_of_backtest_overfitting(one, n_splits=16).pbo < 0.1


def test_pbo_independent_of_column_order() -> None:
    r = _noise(9, 600, 60)
    r[:, :3] += 0.0015
    res = probability_of_backtest_overfitting(r, n_splits=10)
    perm = np.random.default_rng(1).permutation(60)
    again = probability_of_backtest_overfitting(r[:, perm], n_splits=10)
    assert again.pbo == res.pbo
    np.testing.assert_allclose(again.logits, res.logits)
    np.testing.assert_allclose(again.oos_performance, res.oos_performance)


def test_pbo_sampled_combinations() -> None:
    r = _noise(3, 800, 50)
    full = probability_of_backtest_overfitting(r, n_splits=16)
    part = probability_of_backtest_overfitting(r, n_splits=16, max_combinations=2000, seed=5)
    assert part.n_combinations == 2000
    assert part.pbo == pytest.approx(full.pbo, abs=0.05)
    same = probability_of_backtest_overfitting(r, n_splits=16, max_combinations=2000, seed=5)
    np.testing.assert_array_equal(same.logits, part.logits)
    # 19 of the 20 splits of S = 6: every one is a distinct half of the blocks.
    few = probability_of_backtest_overfitting(r, n_splits=6, max_combinations=19, metric=_col_mean)
    all6 = probability_of_backtest_overfitting(r, n_splits=6, metric=_col_mean)
    assert few.n_combinations == 19
    assert set(np.round(few.logits, 12)) <= set(np.round(all6.logits, 12))
    with pytest.raises(OverfittingError, match="max_combinations"):
        probability_of_backtest_overfitting(_noise(0, 48, 2), n_splits=24)


def test_pbo_flat_trial_ranks_worst() -> None:
    r = _noise(6, 400, 20)
    r[:, 5] = 0.0  # a strategy that never trades: Sharpe undefined, never selected
    res = probability_of_backtest_overfitting(r, n_splits=8)
    assert np.isfinite(res.logits).all() and np.isfinite(res.is_performance).all()


@pytest.mark.parametrize(
    ("returns", "kwargs", "match"),
    [
        (np.zeros((40, 1)), {}, "at least 2 trials"),
        (np.zeros(40), {}, "2-D"),
        (_noise(0, 40, 3), {"n_splits": 5}, "even"),
        (_noise(0, 40, 3), {"n_splits": 0}, "n_splits"),
        (_noise(0, 31, 3), {"n_splits": 16}, "at least 2 \\* n_splits = 32 bars"),
        (_noise(0, 40, 3), {"n_splits": 4, "max_combinations": 0}, "max_combinations"),
        (_noise(0, 40, 3), {"n_splits": 4, "metric": lambda x: x.mean()}, "shape"),
    ],
)
def test_pbo_invalid_inputs_raise(returns, kwargs, match) -> None:
    with pytest.raises(OverfittingError, match=match):
        probability_of_backtest_overfitting(returns, **kwargs)


def test_pbo_nan_error_names_trial_columns() -> None:
    r = _noise(0, 64, 6)
    r[3, 4] = np.nan
    r[0, 1] = np.nan
    with pytest.raises(OverfittingError, match=r"trial column\(s\) 1, 4"):
        probability_of_backtest_overfitting(r, n_splits=4)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_splits=st.sampled_from([2, 4, 6]), trials=st.integers(2, 6))
def test_pbo_property_finite_logits(data, n_splits: int, trials: int) -> None:
    bars = data.draw(st.integers(2 * n_splits, 4 * n_splits + 3))
    r = data.draw(hnp.arrays(np.float64, (bars, trials),
                             elements=st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False)))
    res = probability_of_backtest_overfitting(r, n_splits=n_splits)
    assert res.n_combinations == math.comb(n_splits, n_splits // 2)
    assert res.logits.shape == (res.n_combinations,)
    assert np.isfinite(res.logits).all()
    assert 0.0 <= res.pbo <= 1.0 and 0.0 <= res.prob_oos_loss <= 1.0


# --------------------------------------------------------------------------- report


def test_overfitting_report() -> None:
    r = _noise(7, 400, 30)
    r[:, 4] += 0.003
    numbers = list(range(100, 130))
    rep = overfitting_report(r, numbers=numbers, n_splits=8)
    assert rep["best_number"] == 104
    assert rep["n_trials"] == 30 and rep["n_obs"] == 400 and rep["n_combinations"] == 70
    assert all(type(v) in (int, float) for v in rep.values())
    d = deflated_sharpe_from_trials(r)
    assert rep["dsr"] == d.dsr and rep["sharpe"] == d.sharpe
    assert rep["pbo"] == probability_of_backtest_overfitting(r, n_splits=8).pbo
    chosen = overfitting_report(r, best=0, n_splits=8)
    assert chosen["best_number"] == 0 and chosen["dsr"] < rep["dsr"]
    with pytest.raises(OverfittingError, match="numbers"):
        overfitting_report(r, numbers=[1, 2, 3], n_splits=8)
