"""The DSR and the PBO of a sweep whose per-bar returns are streamed from disk in chunks of trials.

:func:`report_from_chunks` gives the numbers of
:meth:`rustybt_ray.optimize.result.OptimizationResult.overfitting` (less
``sharpe_annual``) without ever building the bars x trials matrix:

1. **One pass over the returns.**  A numba kernel reduces each chunk of trials
   (rows) to, per trial, the sum and sum of squares of its returns shifted by
   its first value (its per-bar Sharpe: the DSR's cross-trial variance, the
   constant check, the best) and the sum and sum of squares of each of the
   ``n_splits`` CSCV blocks, shifted by its first kept value (the PBO).  The
   best trial's returns are kept.
2. **DSR** (Bailey & López de Prado 2014) from the best's returns, the number
   of trials and the variance of their Sharpe ratios.
3. **CSCV** (Bailey, Borwein, López de Prado & Zhu 2017) over all C(S, S/2)
   combinations on the (S x N) block statistics, by two numba kernels:
   the IS argmax per combination, then the OOS rank counts of the chosen trial.

Memory: one chunk of returns (the caller's) plus ``(2 S + 3) x 8`` bytes per
trial whose returns vary (block sums and squares, shift, Sharpe, number; S = 16:
280 B, 280 MB at 1,000,000 trials), plus one 40 MiB slab while the block
statistics are assembled.  Measured (benchmarks/bench_overfitting_scale.py) at
1,000,000 trials x 2,516 bars on 2 cores: about 45 s and 400 MB over the warm
process.

Every sum is added in the same order as the in-memory NumPy code of
:mod:`rustybt_ray.optimize.overfitting` and every Sharpe ratio is computed by the
same IEEE operations, so the scores are equal bit for bit and argmax ties (to the
first trial) and ranks come out the same.  Non-finite returns are treated like
``np.nan_to_num(x, nan=0.0)`` treats them, as the in-memory path does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rustybt_ray.errors import OverfittingError
from rustybt_ray.optimize.overfitting import (
    PBOResult,
    _VAR_RTOL,
    _check_int,
    _combinations,
    _mask_indices,
    _ordered_sum,
    _pbo_result,
    _sharpe,
    deflated_sharpe_ratio,
)

__all__ = ["StreamStats", "cscv_from_block_stats", "report_from_chunks", "stream_stats"]

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
# Trials per CSCV tile: a tile's block statistics (2 S x 8 B each, 256 KB at
# S = 16) stay in a core's L2 cache while every combination of a range is scored.
_TILE = 1024
# Bytes per slab of block statistics: above glibc's 32 MiB mmap ceiling.
_SLAB_BYTES = 40 << 20


@dataclass(frozen=True, eq=False)
class StreamStats:
    """What one pass over the returns keeps: per trial whose returns vary, and the best trial's returns."""

    numbers: np.ndarray  # int64[N] of the varying trials, in stream order
    sharpes: np.ndarray  # float64[N] per-bar Sharpe (ddof=1)
    block_sum: np.ndarray  # float64[S, N] per-block sums of the trial minus its first kept value
    block_sq: np.ndarray  # float64[S, N] per-block sums of squares, same shift
    shift: np.ndarray  # float64[N] first kept value (after rows_dropped)
    best_returns: np.ndarray  # float64[T] of the best trial, NaN -> 0
    n_bars: int
    n_constant: int
    rows_dropped: int


@functools.cache
def _kernels() -> dict[str, Any]:
    """The numba kernels, compiled (or loaded from numba's cache) on first use only."""
    from numba import njit, prange

    @njit(cache=True, parallel=True)
    def chunk_stats(r, dropped, block, tot, tot_sq, first, b_sum, b_sq, b_shift):  # pragma: no cover - jitted
        c, t = r.shape
        s = b_sum.shape[1]
        for i in prange(c):
            # np.nan_to_num(x, nan=0.0): NaN -> 0, +-inf -> +-largest float.
            row = np.empty(t)
            for k in range(t):
                v = np.float64(r[i, k])
                if v != v:
                    v = 0.0
                elif v == np.inf:
                    v = 1.7976931348623157e308
                elif v == -np.inf:
                    v = -1.7976931348623157e308
                row[k] = v
            v0 = row[0]
            acc = 0.0
            acc_sq = 0.0
            for k in range(t):
                x = row[k] - v0
                acc += x
                acc_sq += x * x
            tot[i] = acc
            tot_sq[i] = acc_sq
            first[i] = v0
            sh = row[dropped]
            b_shift[i] = sh
            for b in range(s):
                base = dropped + b * block
                x = row[base] - sh
                acc = x
                acc_sq = x * x
                for q in range(base + 1, base + block):
                    x = row[q] - sh
                    acc += x
                    acc_sq += x * x
                b_sum[i, b] = acc
                b_sq[i, b] = acc_sq

    @njit(cache=True, parallel=True)
    def select(b_sum, b_sq, shift, idx, inv_m, inv_m1, lim, tile, n_ranges):  # pragma: no cover - jitted
        n_comb, half = idx.shape
        n = b_sum.shape[1]
        best_val = np.full(n_comb, -np.inf)
        best_j = np.zeros(n_comb, dtype=np.int64)
        per = (n_comb + n_ranges - 1) // n_ranges
        for g in prange(n_ranges):
            c_lo = g * per
            c_hi = min(n_comb, c_lo + per)
            # part[h] = b[k0] + ... + b[kh], added left to right like the NumPy code:
            # consecutive (lexicographic) combinations share a prefix, so only the
            # changed suffix is added again, with the very same roundings.
            part = np.empty((half, tile))
            part_sq = np.empty((half, tile))
            score = np.empty(tile)
            for lo in range(0, n, tile):
                hi = min(n, lo + tile)
                w = hi - lo
                shv = shift[lo:hi]
                for c in range(c_lo, c_hi):
                    p = 0
                    if c > c_lo:
                        while idx[c, p] == idx[c - 1, p]:
                            p += 1
                    for h in range(p, half):
                        k = idx[c, h]
                        if h == 0:
                            part[0, :w] = b_sum[k, lo:hi]
                            part_sq[0, :w] = b_sq[k, lo:hi]
                        else:
                            part[h, :w] = part[h - 1, :w] + b_sum[k, lo:hi]
                            part_sq[h, :w] = part_sq[h - 1, :w] + b_sq[k, lo:hi]
                    a = part[half - 1, :w]
                    aq = part_sq[half - 1, :w]
                    sc = score[:w]
                    # overfitting._sharpe, operation for operation.
                    for j in range(w):
                        mean = a[j] * inv_m
                        dev = aq[j] - a[j] * mean
                        val = (mean + shv[j]) / np.sqrt(dev * inv_m1)
                        sc[j] = val if dev > aq[j] * lim else -np.inf
                    bv = best_val[c]
                    bj = best_j[c]
                    for j in range(w):
                        if sc[j] > bv:  # strict: ties go to the first trial, like np.argmax
                            bv = sc[j]
                            bj = lo + j
                    best_val[c] = bv
                    best_j[c] = bj
        return best_val, best_j

    @njit(cache=True, parallel=True)
    def rank(b_sum, b_sq, all_sum, all_sq, shift, idx, sel, inv_m, inv_m1, lim, tile, n_ranges):  # pragma: no cover
        n_comb, half = idx.shape
        n = b_sum.shape[1]
        below = np.zeros(n_comb, dtype=np.int64)
        at_or_below = np.zeros(n_comb, dtype=np.int64)
        per = (n_comb + n_ranges - 1) // n_ranges
        for g in prange(n_ranges):
            c_lo = g * per
            c_hi = min(n_comb, c_lo + per)
            part = np.empty((half, tile))
            part_sq = np.empty((half, tile))
            for lo in range(0, n, tile):
                hi = min(n, lo + tile)
                w = hi - lo
                shv = shift[lo:hi]
                tot = all_sum[lo:hi]
                tot_sq = all_sq[lo:hi]
                for c in range(c_lo, c_hi):
                    p = 0
                    if c > c_lo:
                        while idx[c, p] == idx[c - 1, p]:
                            p += 1
                    for h in range(p, half):
                        k = idx[c, h]
                        if h == 0:
                            part[0, :w] = b_sum[k, lo:hi]
                            part_sq[0, :w] = b_sq[k, lo:hi]
                        else:
                            part[h, :w] = part[h - 1, :w] + b_sum[k, lo:hi]
                            part_sq[h, :w] = part_sq[h - 1, :w] + b_sq[k, lo:hi]
                    a = part[half - 1, :w]
                    aq = part_sq[half - 1, :w]
                    ref = sel[c]
                    lt = 0
                    le = 0
                    for j in range(w):
                        o = tot[j] - a[j]
                        o_sq = tot_sq[j] - aq[j]
                        mean = o * inv_m
                        dev = o_sq - o * mean
                        val = (mean + shv[j]) / np.sqrt(dev * inv_m1)
                        val = val if dev > o_sq * lim else -np.inf
                        lt += val < ref
                        le += val <= ref
                    below[c] += lt
                    at_or_below[c] += le
        return below, at_or_below

    return {"chunk_stats": chunk_stats, "select": select, "rank": rank}


def _check_chunk(numbers: object, returns: object) -> tuple[np.ndarray, np.ndarray]:
    nums = np.asarray(numbers)
    if nums.ndim != 1 or not (nums.size == 0 or np.issubdtype(nums.dtype, np.integer)):
        raise OverfittingError(f"chunk numbers must be a 1-D integer array, got {nums.dtype} shape {nums.shape}")
    try:
        ret = np.asarray(returns)
    except (TypeError, ValueError):
        raise OverfittingError("chunk returns must be a numeric array") from None
    if ret.dtype not in (np.float32, np.float64):
        if not np.issubdtype(ret.dtype, np.number) or np.issubdtype(ret.dtype, np.complexfloating):
            raise OverfittingError(f"chunk returns must be real numbers, got dtype {ret.dtype}")
        ret = ret.astype(np.float64)
    if ret.ndim != 2 or ret.shape[0] != nums.size:
        raise OverfittingError(f"a chunk of {nums.size} numbers needs returns of shape ({nums.size}, bars), "
                               f"got {ret.shape}")
    return nums.astype(np.int64, copy=False), np.ascontiguousarray(ret)


class _Columns:
    """A growing (rows x N) float64 matrix fed by (c x rows) pieces, in slabs of ``_SLAB_BYTES``.

    Each slab is one allocation above glibc's largest mmap threshold (32 MiB), so
    it goes back to the system the moment it is freed: assembling the final
    matrix slab by slab peaks at the matrix plus one slab, not twice the matrix
    (small per-chunk pieces would stay in the heap after being freed).
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.width = max(1, _SLAB_BYTES // (8 * rows))
        self.slabs: list[np.ndarray] = []
        self.used = self.width  # columns used in the last slab

    def append(self, piece: np.ndarray) -> None:
        """Add the trials (rows of ``piece``) as columns."""
        lo = 0
        while lo < piece.shape[0]:
            if self.used == self.width:
                self.slabs.append(np.empty((self.rows, self.width)))
                self.used = 0
            take = min(self.width - self.used, piece.shape[0] - lo)
            self.slabs[-1][:, self.used:self.used + take] = piece[lo:lo + take].T
            self.used += take
            lo += take

    def finish(self) -> np.ndarray:
        """The C-ordered (rows x N) matrix; the slabs are released as they are copied."""
        n = (len(self.slabs) - 1) * self.width + self.used if self.slabs else 0
        out = np.empty((self.rows, n))
        lo = 0
        self.slabs.reverse()
        while self.slabs:
            slab = self.slabs.pop()
            take = min(self.width, n - lo)
            out[:, lo:lo + take] = slab[:, :take]
            del slab
            lo += take
        return out


def stream_stats(chunks: Chunks, best_number: int, n_splits: int = 16) -> StreamStats:
    """One pass over ``chunks()``: per-trial Sharpe and CSCV block statistics, and the best trial's returns.

    ``chunks`` returns an iterator of ``(numbers int64[c], returns float[c, bars])``
    with trials as rows.  Trials with constant returns are counted and dropped.
    Raises :class:`OverfittingError` for lengths that differ, too few bars for
    ``n_splits`` blocks, a best trial that is missing or constant, or fewer than
    2 trials (2 varying ones).
    """
    s = _check_int("n_splits", n_splits, 2)
    best = _check_int("best_number", best_number, -(2**63))
    kern = _kernels()["chunk_stats"]
    n_bars = -1
    block = dropped = 0
    nums_all: list[np.ndarray] = []
    sharpes_all: list[np.ndarray] = []
    b_sums, b_sqs = _Columns(s), _Columns(s)
    shifts: list[np.ndarray] = []
    best_returns: np.ndarray | None = None
    n_seen = 0
    for item in chunks():
        try:
            numbers, returns = item
        except (TypeError, ValueError):
            raise OverfittingError("chunks() must yield (numbers, returns) pairs") from None
        nums, ret = _check_chunk(numbers, returns)
        if nums.size == 0:
            continue
        if n_bars < 0:
            n_bars = ret.shape[1]
            if n_bars < max(3, 2 * s):
                raise OverfittingError(f"need at least max(3, 2 * n_splits) = {max(3, 2 * s)} bars, got {n_bars}")
            block = n_bars // s
            dropped = n_bars - block * s
        elif ret.shape[1] != n_bars:
            raise OverfittingError(f"the trials' returns have different lengths [{n_bars}, {ret.shape[1]}]: "
                                   "one date range is needed")
        c = nums.size
        tot, tot_sq, first, shift = np.empty(c), np.empty(c), np.empty(c), np.empty(c)
        b_sum, b_sq = np.empty((c, s)), np.empty((c, s))
        kern(ret, dropped, block, tot, tot_sq, first, b_sum, b_sq, shift)
        # The very arithmetic of overfitting._column_sharpes, on the same sums.
        sharpes = _sharpe(tot, tot_sq, n_bars, first)
        varying = np.isfinite(sharpes)
        if best_returns is None:
            hit = np.flatnonzero(nums == best)
            if hit.size:
                if not varying[hit[0]]:
                    raise OverfittingError(f"the best trial (#{best}) has constant returns (it never traded?): "
                                           "its Sharpe ratio, hence the DSR, is undefined")
                best_returns = np.nan_to_num(ret[hit[0]].astype(np.float64), nan=0.0)
        n_seen += c
        nums_all.append(nums[varying].copy())
        sharpes_all.append(sharpes[varying])
        b_sums.append(b_sum[varying])
        b_sqs.append(b_sq[varying])
        shifts.append(shift[varying])
    if n_seen < 2:
        raise OverfittingError(f"overfitting statistics need at least 2 complete trials, got {n_seen}")
    if best_returns is None:
        raise OverfittingError(f"the best trial (#{best}) is not among the trials with returns")
    numbers_v = np.concatenate(nums_all)
    n = numbers_v.size
    if n < 2:
        raise OverfittingError(f"overfitting statistics need at least 2 trials whose returns vary, got {n} "
                               f"({n_seen - n} have constant returns)")
    block_sum, block_sq = b_sums.finish(), b_sqs.finish()
    return StreamStats(numbers=numbers_v, sharpes=np.concatenate(sharpes_all), block_sum=block_sum,
                       block_sq=block_sq, shift=np.concatenate(shifts), best_returns=best_returns,
                       n_bars=n_bars, n_constant=n_seen - n, rows_dropped=dropped)


def cscv_from_block_stats(block_sum: np.ndarray, block_sq: np.ndarray, shift: np.ndarray, block: int,
                          masks: np.ndarray, rows_dropped: int = 0) -> PBOResult:
    """CSCV (Bailey et al. 2017) on (S x N) block statistics: the :class:`~.overfitting.PBOResult`.

    ``block_sum``/``block_sq`` hold, per block and trial, the sum and sum of
    squares of ``block`` returns minus ``shift`` (the trial's first kept value);
    ``masks`` are the boolean (combinations x S) IS masks.  The per-bar Sharpe of
    each half is the score; undefined scores are -inf and IS ties go to the
    first trial, as in :func:`~.overfitting.probability_of_backtest_overfitting`.
    """
    import numba

    k = _kernels()
    s, n = block_sum.shape
    m = block * (s // 2)
    # The constants of overfitting._sharpe, computed by the same Python expressions.
    inv_m, inv_m1, lim = 1.0 / m, 1.0 / (m - 1), _VAR_RTOL * (m - 1) / m
    idx = np.ascontiguousarray(_mask_indices(masks), dtype=np.int64)
    all_sum, all_sq = _ordered_sum(block_sum), _ordered_sum(block_sq)
    n_ranges = min(idx.shape[0], 4 * numba.get_num_threads())
    is_perf, chosen = k["select"](block_sum, block_sq, shift, idx, inv_m, inv_m1, lim, _TILE, n_ranges)
    # The chosen trial's OOS score, by the NumPy code the in-memory path uses.
    is_sum, is_sq = block_sum[idx[:, 0], chosen], block_sq[idx[:, 0], chosen]
    for h in range(1, idx.shape[1]):
        is_sum += block_sum[idx[:, h], chosen]
        is_sq += block_sq[idx[:, h], chosen]
    oos_perf = _sharpe(all_sum[chosen] - is_sum, all_sq[chosen] - is_sq, m, shift[chosen], -np.inf)
    below, at_or_below = k["rank"](block_sum, block_sq, all_sum, all_sq, shift, idx, oos_perf,
                                   inv_m, inv_m1, lim, _TILE, n_ranges)
    omega = (below + at_or_below + 1) / (2.0 * (n + 1))
    return _pbo_result(is_perf, oos_perf, omega, s, n, rows_dropped)


def report_from_chunks(chunks: Chunks, best_number: int, *, n_splits: int = 16, n_tried: int | None = None,
                       max_combinations: int | None = None, seed: int = 0) -> dict[str, float | int]:
    """:meth:`OptimizationResult.overfitting`'s report (less ``sharpe_annual``) from returns streamed by trial.

    ``chunks`` is a zero-argument callable returning a fresh iterator of
    ``(numbers int64[c], returns float32/float64[c, bars])``, trials as rows; it is
    iterated once.  NaN returns count as 0.  Trials with constant returns leave
    the statistics (``n_constant_returns``) but deflate the best through
    ``n_tried``: the distinct parameter sets tried (default: every trial in the
    chunks); when it exceeds the varying trials the DSR is deflated by it.
    ``max_combinations`` evaluates a seeded sample of the C(S, S/2) CSCV
    combinations (standard error of the PBO ``sqrt(p (1 - p) / M)``); the default
    is all of them.  Memory: one chunk plus ``(2 S + 3) x 8`` bytes per trial.
    """
    s = _check_int("n_splits", n_splits, 2)
    if s % 2:
        raise OverfittingError(f"n_splits must be even, got {s}")
    if n_tried is not None:
        n_tried = _check_int("n_tried", n_tried, 1)
    if max_combinations is not None:
        max_combinations = _check_int("max_combinations", max_combinations, 1)
    masks = _combinations(s, max_combinations, _check_int("seed", seed, 0))
    st = stream_stats(chunks, best_number, s)
    n = st.numbers.size
    variance = float(np.var(st.sharpes, ddof=1))
    dsr = deflated_sharpe_ratio(st.best_returns, n, variance)
    report: dict[str, float | int] = {
        "best_number": int(best_number),
        **{key: getattr(dsr, key) for key in ("n_trials", "n_obs", "sharpe", "sharpe_variance",
                                              "expected_max_sharpe", "skew", "kurtosis", "psr_zero", "dsr")}}
    pbo = cscv_from_block_stats(st.block_sum, st.block_sq, st.shift, st.n_bars // s, masks, st.rows_dropped)
    report.update({key: getattr(pbo, key) for key in ("pbo", "prob_oos_loss", "degradation_slope",
                                                      "degradation_intercept", "degradation_r2",
                                                      "n_combinations", "n_splits")})
    tried = n + st.n_constant if n_tried is None else n_tried
    if tried > n:
        d = deflated_sharpe_ratio(st.best_returns, tried, variance)
        report.update(n_trials=tried, expected_max_sharpe=d.expected_max_sharpe, dsr=d.dsr)
    report["n_with_returns"] = n
    report["n_constant_returns"] = st.n_constant
    return report
