"""How much of a sweep's best result is selection luck: the Deflated Sharpe Ratio and the PBO.

Two complementary diagnostics for the *selected* trial of a parameter sweep:

* **Deflated Sharpe Ratio (DSR)** -- Bailey & López de Prado (2014), "The Deflated
  Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and
  Non-Normality", *J. Portfolio Management* 40(5).  The probability that the
  selected trial's true Sharpe ratio beats the Sharpe the best of ``N``
  skill-less trials would show by chance, corrected for sample length, skew and
  fat tails.
* **Probability of Backtest Overfitting (PBO)** -- Bailey, Borwein, López de
  Prado & Zhu (2017), "The Probability of Backtest Overfitting", *J.
  Computational Finance* 20(4), estimated by combinatorially symmetric
  cross-validation (CSCV): how often the in-sample winner lands in the bottom
  half out of sample.

Units.  Every Sharpe ratio in this module is **per bar** (mean / standard
deviation of per-bar returns, ``ddof=1``), never annualised, because the PSR's
standard error ``sqrt(T - 1)`` counts bars.  Convert with
``sr_bar = sr_annual / sqrt(periods_per_year)`` and, for the cross-trial
variance, ``var_bar = var_annual / periods_per_year`` (e.g. 252 or 250 daily bars
a year).  Skew is the moment skewness and kurtosis the raw (non-excess)
moment kurtosis (3 for a normal law), both biased (``ddof=0``) estimators.

Reading the PBO: skill-less iid trials give 1/2 on average (the IS winner's
OOS rank is uniform), not 1; a PBO near 1 means IS gains are paid back OOS; a
real edge drives it towards 0.  Only NumPy and the standard library are used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from rustybt_ray.errors import OverfittingError

__all__ = [
    "EULER_GAMMA",
    "DeflatedSharpe",
    "PBOResult",
    "deflated_sharpe_from_trials",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "overfitting_report",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
]

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
# Enumerating more CSCV splits than this costs minutes and gigabytes; sample instead.
_MAX_ENUMERATED = 1_000_000
# Elements per (combinations x trials) chunk: bounds memory whatever N is.
_CHUNK_ELEMENTS = 131_072
# A variance this small relative to the mean square is rounding noise of a
# constant series, not risk (same idea as rustybt_ray.metrics._STD_TOL): it
# caps a meaningful per-bar Sharpe at about 1e6.
_VAR_RTOL = 1e-12


@dataclass(frozen=True)
class DeflatedSharpe:
    """The DSR of one selected trial and the inputs it was computed from (Sharpe values per bar)."""

    dsr: float
    psr_zero: float
    sharpe: float
    expected_max_sharpe: float
    n_trials: int
    sharpe_variance: float
    skew: float
    kurtosis: float
    n_obs: int


@dataclass(frozen=True, eq=False)
class PBOResult:
    """CSCV outcome (Bailey et al. 2017); arrays have one entry per IS/OOS combination."""

    pbo: float
    logits: np.ndarray
    is_performance: np.ndarray
    oos_performance: np.ndarray
    degradation_slope: float
    degradation_intercept: float
    degradation_r2: float
    prob_oos_loss: float
    n_combinations: int
    n_splits: int
    n_trials: int
    rows_dropped: int


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OverfittingError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OverfittingError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise OverfittingError(f"{name} must be finite, got {value!r}")
    return out


def _as_floats(returns: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(returns, dtype=np.float64)
    except (TypeError, ValueError):
        raise OverfittingError("returns must be a numeric array") from None


def _check_matrix(returns: np.ndarray, min_trials: int) -> np.ndarray:
    arr = _as_floats(returns)
    if arr.ndim != 2:
        raise OverfittingError(f"returns must be a 2-D (bars x trials) array, got shape {arr.shape}")
    if arr.shape[1] < min_trials:
        raise OverfittingError(f"need at least {min_trials} trials (columns), got {arr.shape[1]}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=0))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise OverfittingError(f"returns hold NaN or inf in trial column(s) {shown}")
    return arr


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe of ``n_trials`` independent skill-less trials (DSR paper, eq. for SR0).

    ``SR0 = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))`` with ``g`` the
    Euler-Mascheroni constant, ``V`` the variance of the trials' Sharpe ratios
    (per bar, like the result).  One trial has nothing to be selected from: 0.
    """
    n = _check_int("n_trials", n_trials, 1)
    v = _check_float("sharpe_variance", sharpe_variance)
    if v < 0:
        raise OverfittingError(f"sharpe_variance must be >= 0, got {v}")
    if n == 1:
        return 0.0
    # Z^-1(1 - p) = -Z^-1(p) keeps precision when 1 - 1/N rounds towards 1.
    z1 = -_NORMAL.inv_cdf(1.0 / n)
    z2 = -_NORMAL.inv_cdf(1.0 / (n * math.e))
    return math.sqrt(v) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark_sharpe: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """Probability that the true Sharpe exceeds ``benchmark_sharpe`` (Bailey & López de Prado 2012/2014).

    ``PSR = Z((SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2))`` with
    per-bar Sharpe ratios, ``T = n_obs`` bars, skew ``g3`` and raw kurtosis ``g4``.
    """
    sr = _check_float("sharpe", sharpe)
    sr_star = _check_float("benchmark_sharpe", benchmark_sharpe)
    t = _check_int("n_obs", n_obs, 2)
    g3 = _check_float("skew", skew)
    g4 = _check_float("kurtosis", kurtosis)
    # Real data always has g4 >= g3^2 + 1, which keeps this positive; only
    # hand-typed moments can break it.
    denom = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    if denom <= 0:
        raise OverfittingError(
            f"skew={g3} and kurtosis={g4} are inconsistent (kurtosis must be >= skew**2 + 1)")
    return _NORMAL.cdf((sr - sr_star) * math.sqrt(t - 1) / math.sqrt(denom))


def _moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-bar Sharpe (ddof=1), moment skew and raw kurtosis (ddof=0)."""
    mean = float(returns.mean())
    dev = returns - mean
    m2 = float(np.mean(dev * dev))
    if m2 <= _VAR_RTOL * float(np.mean(returns * returns)):
        raise OverfittingError("returns are constant: the Sharpe ratio is undefined")
    sd = math.sqrt(m2 * returns.size / (returns.size - 1))
    skew = float(np.mean(dev**3)) / m2**1.5
    kurt = float(np.mean(dev**4)) / m2**2
    return mean / sd, skew, kurt


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, sharpe_variance: float) -> DeflatedSharpe:
    """Deflated Sharpe Ratio of the selected trial (Bailey & López de Prado 2014).

    ``returns`` are the per-bar returns of the trial picked out of ``n_trials``;
    ``sharpe_variance`` is the variance of the per-bar Sharpe ratios across all
    trials.  ``dsr = PSR(SR0)`` with ``SR0 = expected_max_sharpe(n_trials, V)``;
    ``psr_zero = PSR(0)`` ignores the selection.
    """
    r = _as_floats(returns)
    if r.ndim != 1:
        raise OverfittingError(f"returns must be 1-D (one trial), got shape {r.shape}")
    if r.size < 3:
        raise OverfittingError(f"need at least 3 observations, got {r.size}")
    if not np.isfinite(r).all():
        raise OverfittingError("returns hold NaN or inf")
    n = _check_int("n_trials", n_trials, 1)
    sr0 = expected_max_sharpe(n, sharpe_variance)
    sr, skew, kurt = _moments(r)
    return DeflatedSharpe(
        dsr=probabilistic_sharpe_ratio(sr, sr0, r.size, skew, kurt),
        psr_zero=probabilistic_sharpe_ratio(sr, 0.0, r.size, skew, kurt),
        sharpe=sr,
        expected_max_sharpe=sr0,
        n_trials=n,
        sharpe_variance=float(sharpe_variance),
        skew=skew,
        kurtosis=kurt,
        n_obs=int(r.size),
    )


def deflated_sharpe_from_trials(returns_matrix: np.ndarray, best: int | None = None) -> DeflatedSharpe:
    """DSR of the best (or the ``best``-th) column of a bars x trials matrix (Bailey & López de Prado 2014).

    Every column's per-bar Sharpe is computed, their variance (``ddof=1``) is the
    ``V`` of the paper and ``N`` is the number of columns.  Treating columns as
    independent trials overstates ``N`` for correlated sweeps, which makes the
    DSR conservative.
    """
    arr = _check_matrix(returns_matrix, 2)
    if arr.shape[0] < 3:
        raise OverfittingError(f"need at least 3 observations, got {arr.shape[0]}")
    sharpes = _column_sharpes(arr)
    flat = np.flatnonzero(~np.isfinite(sharpes))
    if flat.size:
        raise OverfittingError(f"trial column(s) {', '.join(map(str, flat[:10]))} have constant returns")
    if best is None:
        col = int(np.argmax(sharpes))
    else:
        col = _check_int("best", best, 0)
        if col >= arr.shape[1]:
            raise OverfittingError(f"best={col} is out of range for {arr.shape[1]} trials")
    return deflated_sharpe_ratio(arr[:, col], arr.shape[1], float(np.var(sharpes, ddof=1)))


def _sharpe(
    total: np.ndarray, total_sq: np.ndarray, n: int, shift: np.ndarray | float = 0.0, undefined: float = math.nan
) -> np.ndarray:
    """Sharpe (ddof=1) of ``x + shift`` from the sums and sums of squares of ``x``.

    A variance that is rounding noise gives ``undefined``: the Sharpe does not
    exist, and +inf would rank a flat series as the best trial.  In-place
    arithmetic because CSCV calls this on (combinations x trials) chunks.
    """
    mean = total * (1.0 / n)
    dev = total * mean
    np.subtract(total_sq, dev, out=dev)  # (n - 1) * variance
    flat = dev <= total_sq * (_VAR_RTOL * (n - 1) / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.sqrt(dev * (1.0 / (n - 1)), out=dev)
        mean += shift
        np.divide(mean, dev, out=mean)
    if flat.any():
        mean[flat] = undefined
    return mean


def constant_columns(returns_matrix: np.ndarray) -> np.ndarray:
    """Boolean per column of a bars x trials matrix: True where the returns are constant (no Sharpe ratio)."""
    arr = _check_matrix(returns_matrix, 1)
    return ~np.isfinite(_column_sharpes(arr))


def _column_sharpes(arr: np.ndarray) -> np.ndarray:
    total, total_sq = _ordered_sums(arr - arr[0], 0)
    return _sharpe(total, total_sq, arr.shape[0], arr[0])


def _ordered_sums(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``x`` and of ``x * x`` along ``axis``, adding one slice at a time in index order.

    NumPy's ``sum`` picks pairwise or sequential order from the memory layout (a
    column-filtered matrix is not C-ordered), so its last bits vary; a fixed order
    makes the scores, hence argmax ties and ranks, reproducible bit for bit, also
    by the out-of-core kernels of :mod:`rustybt_ray.optimize.overfitting_scale`.
    """
    x = np.moveaxis(x, axis, 0)
    total = np.array(x[0], order="C")
    total_sq = np.multiply(total, total)
    for row in x[1:]:
        total += row
        total_sq += row * row
    return total, total_sq


def _ordered_sum(x: np.ndarray) -> np.ndarray:
    """Sum of ``x`` along axis 0, one slice at a time in index order (see :func:`_ordered_sums`)."""
    total = np.array(x[0], order="C")
    for row in x[1:]:
        total += row
    return total


def _combinations(n_splits: int, max_combinations: int | None, seed: int) -> np.ndarray:
    """Boolean (combinations x splits) IS masks: all of C(S, S/2), or a seeded sample of them."""
    half = n_splits // 2
    total = math.comb(n_splits, half)
    if max_combinations is not None and max_combinations < total:
        if total > np.iinfo(np.int64).max:
            raise OverfittingError(f"n_splits={n_splits} is too large")
        ranks = np.sort(np.random.default_rng(seed).choice(total, size=max_combinations, replace=False))
        masks = np.zeros((max_combinations, n_splits), dtype=bool)
        for row, r in enumerate(ranks.tolist()):
            # Unrank r in lexicographic order (combinatorial number system).
            x = 0
            for i in range(half):
                while (c := math.comb(n_splits - x - 1, half - i - 1)) <= r:
                    r -= c
                    x += 1
                masks[row, x] = True
                x += 1
        return masks
    if total > _MAX_ENUMERATED:
        raise OverfittingError(
            f"n_splits={n_splits} gives {total} combinations; pass max_combinations to sample some")
    masks = np.zeros((total, n_splits), dtype=bool)
    for row, combo in enumerate(itertools.combinations(range(n_splits), half)):
        masks[row, list(combo)] = True
    return masks


def probability_of_backtest_overfitting(
    returns: np.ndarray,
    n_splits: int = 16,
    metric: Callable[[np.ndarray], np.ndarray] | None = None,
    max_combinations: int | None = None,
    seed: int = 0,
) -> PBOResult:
    """Probability of Backtest Overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu 2017).

    ``returns`` is bars x trials.  The rows are cut into ``n_splits`` (S, even)
    equal contiguous blocks; ``T mod S`` rows are dropped *from the start* so the
    most recent bars are kept (``rows_dropped``).  For each choice of S/2 blocks
    as in-sample (IS, the rest out-of-sample, OOS) the trial with the best IS
    metric is selected, its OOS rank among the N trials (1 = worst, ties
    averaged) gives ``w = rank / (N + 1)`` and the logit ``ln(w / (1 - w))``.
    ``pbo`` is the fraction of logits ``<= 0`` (the paper's integral up to 0:
    a selected trial exactly at the OOS median counts as overfit).  The
    degradation fit regresses the selected trial's OOS score on its IS score;
    ``prob_oos_loss`` is the fraction of splits with an OOS score below 0.

    ``metric`` maps an (rows x N) slice to N scores (higher is better); the
    default is the per-bar Sharpe (ddof=1), computed for every combination at
    once from per-block sums.  Undefined scores (NaN, e.g. zero variance) rank
    as worst.  IS ties go to the first column.  ``max_combinations`` evaluates a
    seeded random sample of the C(S, S/2) combinations instead of all of them.
    """
    arr = _check_matrix(returns, 2)
    s = _check_int("n_splits", n_splits, 2)
    if s % 2:
        raise OverfittingError(f"n_splits must be even, got {s}")
    if max_combinations is not None:
        max_combinations = _check_int("max_combinations", max_combinations, 1)
    seed = _check_int("seed", seed, 0)
    t_all, n = arr.shape
    if t_all < 2 * s:
        raise OverfittingError(f"need at least 2 * n_splits = {2 * s} bars, got {t_all}")
    block = t_all // s
    dropped = t_all - block * s
    blocks = arr[dropped:].reshape(s, block, n)
    masks = _combinations(s, max_combinations, seed)
    n_comb = masks.shape[0]

    is_perf = np.empty(n_comb)
    oos_perf = np.empty(n_comb)
    omega = np.empty(n_comb)
    for lo, is_score, oos_score in _scores(blocks, masks, metric):
        rows = np.arange(is_score.shape[0])
        chosen = np.argmax(is_score, axis=1)
        hi = lo + rows.size
        is_perf[lo:hi] = is_score[rows, chosen]
        sel = oos_score[rows, chosen][:, None]
        oos_perf[lo:hi] = sel[:, 0]
        # Only the chosen trial's rank is needed: counting beats sorting every
        # row.  rank = below + (equal + 1) / 2 = (below + at_or_below + 1) / 2.
        below = np.count_nonzero(oos_score < sel, axis=1)
        at_or_below = np.count_nonzero(oos_score <= sel, axis=1)
        omega[lo:hi] = (below + at_or_below + 1) / (2.0 * (n + 1))
    return _pbo_result(is_perf, oos_perf, omega, s, n, dropped)


def _pbo_result(is_perf: np.ndarray, oos_perf: np.ndarray, omega: np.ndarray,
                n_splits: int, n_trials: int, rows_dropped: int) -> PBOResult:
    """The PBOResult of per-combination IS/OOS scores of the chosen trials and their OOS ranks ``omega``."""
    logits = np.log(omega / (1.0 - omega))
    slope, intercept, r2 = _linear_fit(is_perf, oos_perf)
    for a in (logits, is_perf, oos_perf):
        a.setflags(write=False)
    return PBOResult(
        pbo=float(np.mean(logits <= 0)),
        logits=logits,
        is_performance=is_perf,
        oos_performance=oos_perf,
        degradation_slope=slope,
        degradation_intercept=intercept,
        degradation_r2=r2,
        prob_oos_loss=float(np.mean(oos_perf < 0)),
        n_combinations=int(is_perf.size),
        n_splits=n_splits,
        n_trials=n_trials,
        rows_dropped=rows_dropped,
    )


def _block_stats(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-block sums and sums of squares, (splits x trials), of each trial shifted by its first kept value.

    Shifting each column by its first value leaves the variance untouched but
    removes the level, so sums of squares do not cancel catastrophically and a
    constant column becomes exactly zero.
    """
    shift = blocks[0, 0]
    b_sum, b_sq = _ordered_sums(blocks - shift, 1)
    return b_sum, b_sq, shift


def _mask_indices(masks: np.ndarray) -> np.ndarray:
    """(combinations x S/2) in-sample block indices, ascending, of boolean IS masks."""
    return np.nonzero(masks)[1].reshape(masks.shape[0], -1)


def _selected_sums(b_sum: np.ndarray, b_sq: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IS sums of the blocks in ``idx`` (rows of combinations), added one block at a time in index order.

    A fixed order of additions (not a matrix product, whose order depends on the
    BLAS kernel and its threads) keeps the scores reproducible bit for bit.
    """
    is_sum, is_sq = b_sum[idx[:, 0]], b_sq[idx[:, 0]]
    for h in range(1, idx.shape[1]):
        is_sum += b_sum[idx[:, h]]
        is_sq += b_sq[idx[:, h]]
    return is_sum, is_sq


def _scores(
    blocks: np.ndarray, masks: np.ndarray, metric: Callable[[np.ndarray], np.ndarray] | None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, IS scores, OOS scores) per chunk of combinations; undefined scores are -inf."""
    s, block, n = blocks.shape
    # Chunks small enough to stay in cache, large enough to amortise Python.
    step = max(1, _CHUNK_ELEMENTS // n)
    if metric is None:
        b_sum, b_sq, shift = _block_stats(blocks)
        all_sum, all_sq = _ordered_sum(b_sum), _ordered_sum(b_sq)
        idx = _mask_indices(masks)
        m = block * (s // 2)
        for lo in range(0, masks.shape[0], step):
            is_sum, is_sq = _selected_sums(b_sum, b_sq, idx[lo:lo + step])
            yield (lo, _sharpe(is_sum, is_sq, m, shift, -np.inf),
                   _sharpe(all_sum - is_sum, all_sq - is_sq, m, shift, -np.inf))
        return
    for lo in range(0, masks.shape[0], step):
        chunk = masks[lo:lo + step]
        scores = np.empty((2, chunk.shape[0], n))
        for row, mk in enumerate(chunk):
            for side, sel in enumerate((mk, ~mk)):
                score = np.asarray(metric(blocks[sel].reshape(-1, n)), dtype=np.float64)
                if score.shape != (n,):
                    raise OverfittingError(f"metric must return shape ({n},), got {score.shape}")
                scores[side, row] = score
        scores[np.isnan(scores)] = -np.inf
        yield lo, scores[0], scores[1]


def _linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """OOS-on-IS least squares over finite pairs: (slope, intercept, r^2); NaN where undefined."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0:
        return math.nan, math.nan, math.nan
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    slope = sxy / sxx
    r2 = sxy * sxy / (sxx * syy) if syy > 0 else math.nan
    return slope, float(y.mean()) - slope * float(x.mean()), r2


def overfitting_report(
    returns_matrix: np.ndarray,
    numbers: Sequence[int] | None = None,
    best: int | None = None,
    n_splits: int = 16,
) -> dict[str, float | int]:
    """DSR (Bailey & López de Prado 2014) and PBO (Bailey et al. 2017) of a sweep as plain numbers.

    ``returns_matrix`` is bars x trials; ``numbers`` are the trials' numbers (the
    ``number`` column of an optimization result) in column order, defaulting to
    the column indices; ``best`` is the selected *column* (default: the highest
    per-bar Sharpe).  Sharpe values are per bar.
    """
    arr = _check_matrix(returns_matrix, 2)
    labels = list(range(arr.shape[1])) if numbers is None else [int(v) for v in numbers]
    if len(labels) != arr.shape[1]:
        raise OverfittingError(f"got {len(labels)} numbers for {arr.shape[1]} trials")
    dsr = deflated_sharpe_from_trials(arr, best)
    col = best if best is not None else int(np.argmax(_column_sharpes(arr)))
    pbo = probability_of_backtest_overfitting(arr, n_splits=n_splits)
    dsr_keys = ("n_trials", "n_obs", "sharpe", "sharpe_variance", "expected_max_sharpe",
                "skew", "kurtosis", "psr_zero", "dsr")
    pbo_keys = ("pbo", "prob_oos_loss", "degradation_slope", "degradation_intercept",
                "degradation_r2", "n_combinations", "n_splits")
    return {"best_number": labels[col], **{k: getattr(dsr, k) for k in dsr_keys},
            **{k: getattr(pbo, k) for k in pbo_keys}}
