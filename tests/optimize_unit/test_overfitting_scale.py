"""report_from_chunks (out-of-core DSR + PBO) against the in-memory OptimizationResult.overfitting()."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rustybt_ray.errors import OverfittingError, RustyBTError
from rustybt_ray.optimize.overfitting import _combinations, probability_of_backtest_overfitting
from rustybt_ray.optimize.overfitting_scale import cscv_from_block_stats, report_from_chunks, stream_stats
from rustybt_ray.optimize.result import OptimizationResult

INT_KEYS = ("best_number", "n_trials", "n_obs", "n_combinations", "n_splits", "n_with_returns", "n_constant_returns")


def _in_memory(rows: np.ndarray, numbers: list[int], best: int, n_pruned: int, n_splits: int) -> dict:
    """The reference: the real in-memory OptimizationResult.overfitting() on the same trials.

    Every trial has its own parameter value, so n_tried = complete + pruned; ``best``
    gets the highest objective, so it is ``result.best``.
    """
    records = [{"number": n, "params": {"a": n}, "metrics": {"score": 2.0 if n == best else 1.0},
                "status": "complete", "attempts": 1} for n in numbers]
    records += [{"number": 10_000 + i, "params": {"a": 10_000 + i}, "metrics": {"score": 0.0},
                 "status": "pruned", "attempts": 1} for i in range(n_pruned)]
    res = OptimizationResult.from_records(records, ["a"], ["score"], "score", "maximize", {})
    for n, row in zip(numbers, rows):
        res.returns[n] = row  # type: ignore[index]
    report = res.overfitting(n_splits=n_splits)
    report.pop("sharpe_annual")
    return report


def _chunked(rows: np.ndarray, numbers: list[int], sizes: list[int]):
    """A chunks() callable yielding uneven chunks of rows, reusing one buffer like ResultStore.iter_returns."""
    nums = np.asarray(numbers, dtype=np.int64)

    def chunks():
        buf = np.empty_like(rows)
        lo, i = 0, 0
        while lo < len(rows):
            c = max(1, sizes[i % len(sizes)])
            buf[:c][: len(rows[lo:lo + c])] = rows[lo:lo + c]
            yield nums[lo:lo + c], buf[: len(rows[lo:lo + c])]
            buf[:] = np.nan  # whatever the caller kept of the last chunk is now garbage
            lo, i = lo + c, i + 1
    return chunks


def _assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if key in INT_KEYS or key == "pbo":
            assert got[key] == value, key
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=0.0), key


@st.composite
def sweeps(draw: st.DrawFn) -> tuple:
    """Small random sweeps: some constant trials, NaN bars, duplicated trials (exact ties), float32 or 64."""
    n_splits = draw(st.sampled_from([2, 4, 6, 8]))
    bars = draw(st.integers(max(3, 2 * n_splits), 90))
    n = draw(st.integers(2, 14))
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(seed)
    rows = (rng.normal(0.0, 0.01, (n, bars)) + rng.normal(0.0, 0.002, (n, 1))).astype(dtype)
    n_const = draw(st.integers(0, n - 2))
    for i in rng.choice(n, n_const, replace=False):
        rows[i] = draw(st.sampled_from([0.0, 0.001, -0.02]))
    if draw(st.booleans()):
        rows[rng.random(rows.shape) < 0.1] = np.nan
    if draw(st.booleans()) and n >= 3:
        rows[rng.integers(1, n)] = rows[0]
    numbers = sorted(rng.choice(1000, n, replace=False).tolist())
    varying = [i for i in range(n) if np.ptp(np.nan_to_num(rows[i].astype(np.float64))) > 0]
    best = numbers[varying[draw(st.integers(0, len(varying) - 1))]] if varying else numbers[0]
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    n_pruned = draw(st.integers(0, 3))
    return rows, numbers, best, sizes, n_pruned, n_splits


@settings(max_examples=120, deadline=None)
@given(sweeps())
def test_chunked_report_equals_in_memory(sweep: tuple) -> None:
    rows, numbers, best, sizes, n_pruned, n_splits = sweep
    try:
        want = _in_memory(rows, numbers, best, n_pruned, n_splits)
    except OverfittingError:
        event("both raise")
        with pytest.raises(OverfittingError):
            report_from_chunks(_chunked(rows, numbers, sizes), best, n_splits=n_splits,
                               n_tried=len(numbers) + n_pruned)
        return
    event("compared")
    got = report_from_chunks(_chunked(rows, numbers, sizes), best, n_splits=n_splits,
                             n_tried=len(numbers) + n_pruned)
    _assert_same(got, want)
    # One trial per chunk reads the same.
    _assert_same(report_from_chunks(_chunked(rows, numbers, [1]), best, n_splits=n_splits,
                                    n_tried=len(numbers) + n_pruned), want)


def test_default_n_tried_counts_constant_trials() -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(0.0005, 0.01, (30, 200)).astype(np.float32)
    rows[[3, 9]] = 0.0
    numbers = list(range(30))
    want = _in_memory(rows, numbers, 4, 0, 16)
    got = report_from_chunks(_chunked(rows, numbers, [7, 3]), 4)
    assert got["n_trials"] == 30 and got["n_with_returns"] == 28 and got["n_constant_returns"] == 2
    _assert_same(got, want)
    # Deflating by fewer trials than varying ones is not done: n_tried only adds.
    lower = report_from_chunks(_chunked(rows, numbers, [7]), 4, n_tried=5)
    assert lower["n_trials"] == 28 and lower["dsr"] > got["dsr"]


def test_pbo_kernel_equals_numpy_with_ties_and_undefined_scores() -> None:
    """Duplicated trials tie (argmax -> first), a trial flat in one half has no Sharpe there (-inf)."""
    rng = np.random.default_rng(11)
    bars, n = 64, 40
    m = rng.normal(0.0, 0.01, (bars, n))
    m[:, 7] = m[:, 2]
    m[:, 30] = m[:, 2]
    m[: bars // 2, 11] = 0.003  # constant over the first half of the blocks
    m[:, 12] = -m[:, 5]
    for s, sample in ((8, None), (16, None), (16, 500)):
        masks = _combinations(s, sample, 3)
        want = probability_of_backtest_overfitting(m, n_splits=s, max_combinations=sample, seed=3)
        stats = stream_stats(lambda: iter([(np.arange(n), m.T.copy())]), 0, s)
        got = cscv_from_block_stats(stats.block_sum, stats.block_sq, stats.shift, bars // s, masks,
                                    stats.rows_dropped)
        assert got.pbo == want.pbo and got.n_combinations == want.n_combinations
        for f in ("logits", "is_performance", "oos_performance"):
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
        assert got.degradation_slope == want.degradation_slope


def test_statistics_split_over_slabs_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block statistics assembled from several slabs (pieces cut across slab ends) change nothing."""
    import rustybt_ray.optimize.overfitting_scale as osc

    rng = np.random.default_rng(8)
    rows = rng.normal(0.0, 0.01, (41, 96))
    rows[[4, 20]] = 0.0
    numbers = list(range(41))
    want = _in_memory(rows, numbers, 6, 0, 8)
    monkeypatch.setattr(osc, "_SLAB_BYTES", 8 * 8 * 5)  # 5 trials a slab at n_splits = 8
    _assert_same(report_from_chunks(_chunked(rows, numbers, [3, 7]), 6, n_splits=8, n_tried=41), want)


def test_sampled_combinations_match_in_memory_sampling() -> None:
    rng = np.random.default_rng(2)
    rows = rng.normal(0.0, 0.01, (25, 160))
    got = report_from_chunks(_chunked(rows, list(range(25)), [4]), 0, max_combinations=300, seed=9)
    want = probability_of_backtest_overfitting(rows.T, 16, max_combinations=300, seed=9)
    assert got["n_combinations"] == 300 and got["pbo"] == want.pbo
    assert got["degradation_slope"] == pytest.approx(want.degradation_slope, rel=1e-12)


def _report(rows: np.ndarray, numbers: list[int], best: int, **kw: object) -> dict:
    return report_from_chunks(_chunked(rows, numbers, [2]), best, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("case, match", [
    ("missing_best", "not among"),
    ("constant_best", "constant returns"),
    ("one_trial", "at least 2 complete"),
    ("one_varying", "at least 2 trials whose returns vary"),
    ("odd_splits", "must be even"),
    ("few_bars", "at least"),
    ("n_tried", "n_tried"),
])
def test_bad_input_raises_typed_error(case: str, match: str) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(0.0, 0.01, (4, 64))
    nums = [1, 2, 3, 4]
    kwargs: dict = {}
    best = 1
    if case == "missing_best":
        best = 99
    elif case == "constant_best":
        rows[0] = 0.01
    elif case == "one_trial":
        rows, nums = rows[:1], nums[:1]
    elif case == "one_varying":
        rows[1:] = 0.0
    elif case == "odd_splits":
        kwargs["n_splits"] = 5
    elif case == "few_bars":
        rows = rows[:, :20]
    elif case == "n_tried":
        kwargs["n_tried"] = 0
    with pytest.raises(OverfittingError, match=match) as info:
        _report(rows, nums, best, **kwargs)
    assert isinstance(info.value, RustyBTError)


def test_different_lengths_and_bad_chunks_raise() -> None:
    a, b = np.zeros((2, 64)) + np.arange(64), np.zeros((1, 65)) + np.arange(65)
    with pytest.raises(OverfittingError, match="different lengths"):
        report_from_chunks(lambda: iter([(np.array([1, 2]), a), (np.array([3]), b)]), 1)
    with pytest.raises(OverfittingError, match="shape"):
        report_from_chunks(lambda: iter([(np.array([1, 2, 3]), a)]), 1)
    with pytest.raises(OverfittingError, match="integer"):
        report_from_chunks(lambda: iter([(np.array([1.5, 2.0]), a)]), 1)
    with pytest.raises(OverfittingError, match="pairs"):
        report_from_chunks(lambda: iter([np.zeros((3, 64))]), 1)
