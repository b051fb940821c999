"""ResultStore: rows and returns on disk, the key index, crash repair, and a lazy OptimizationResult over it."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rustybt_ray.errors import ConfigError, OutputError, RustyBTError, SearchSpaceError
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.store import ResultStore, StoredReturns

JOB = {"strategy": "m.S:abc", "bundle_version": "v1", "start": "2020-01-02", "end": "2020-12-31"}
PARAMS = ["fast", "slow"]


def key(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


def record(i: int, bars: int = 12, status: str = "complete", salt: str = "", lost: bool = False) -> dict:
    rng = np.random.default_rng(i)
    ok = status != "failed"
    return {
        "key": key(i, salt), "number": i, "params": {"fast": i % 7 + 1, "slow": 10 + i},
        "metrics": {"sharpe": float(rng.normal()), "total_return": float(rng.normal())} if ok else None,
        "status": status, "error": None if ok else "boom", "duration_s": 0.01, "worker": i % 2,
        "attempts": 1, "returns": rng.normal(0, 0.01, bars).astype(np.float32) if status == "complete" else None,
        "lost": lost,
    }


def test_rows_and_returns_round_trip_through_disk(tmp_path):
    store = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS, flush_rows=4)
    recs = [record(i) for i in range(10)] + [record(10, status="failed")]
    store.append(recs)
    store.close()
    again = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS)
    assert len(again) == 11 and again.loaded == 11
    for r in recs:
        got = again.get(r["key"])
        assert got["number"] == r["number"] and got["params"] == r["params"] and got["status"] == r["status"]
        assert got["metrics"] == r["metrics"]
        if r["returns"] is None:
            assert got["returns"] is None
        else:
            assert isinstance(got["returns"], StoredReturns)
            np.testing.assert_array_equal(again.read_returns(got["returns"].offset, got["returns"].length), r["returns"])
    assert again.get(key(99)) is None
    # A complete trial without returns is no use to a sweep that needs them: it reruns.
    again.append([{**record(11), "returns": None}])
    assert again.get(key(11)) is not None and again.get(key(11), need_returns=True) is None
    assert again.scan().collect().height == 11  # a scan sees committed rows only
    again.commit()
    table = again.scan().sort("number").collect()
    assert table["number"].to_list() == list(range(12))
    assert not {"key", "lost", "returns_offset", "returns_len"} & set(table.columns)


def test_a_dead_driver_leaves_only_whole_shards_and_the_returns_they_point_to(tmp_path):
    path = tmp_path / "s"
    store = ResultStore(path, job=JOB, param_names=PARAMS, flush_rows=1000, flush_seconds=1e9)
    store.append([record(i) for i in range(5)])
    store.commit()
    store.append([record(i) for i in range(5, 9)])  # returns written, rows never committed
    assert store._fh is not None
    store._fh.flush()  # the bytes reached the file; the driver dies before its commit
    (path / "trials" / ".part-000000000005.parquet.x.tmp").write_bytes(b"half a shard")
    committed = 5 * 12 * 4
    assert (path / "returns.f32").stat().st_size == 9 * 12 * 4
    del store  # no close(): killed
    again = ResultStore(path, job=JOB, param_names=PARAMS)
    assert (path / "returns.f32").stat().st_size == committed
    assert not list((path / "trials").glob(".*.tmp"))
    assert len(again) == 5 and all(again.get(key(i)) is None for i in range(5, 9))
    again.append([record(i) for i in range(5, 9)])  # the rerun appends after the committed returns
    again.close()
    final = ResultStore(path, job=JOB, param_names=PARAMS)
    for i in range(9):
        ptr = final.get(key(i))["returns"]
        np.testing.assert_array_equal(final.read_returns(ptr.offset, ptr.length), record(i)["returns"])


def test_a_store_refuses_another_sweep_and_other_directories(tmp_path):
    ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS).close()
    with pytest.raises(ConfigError, match="another sweep"):
        ResultStore(tmp_path / "s", job={**JOB, "end": "2021-12-31"}, param_names=PARAMS)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a results store"):
        ResultStore(tmp_path / "other", job=JOB)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        ResultStore(tmp_path / "file", job=JOB)
    with pytest.raises(ConfigError, match="not a results store"):
        ResultStore(tmp_path / "nothing", readonly=True)
    assert issubclass(ConfigError, RustyBTError)


def test_lost_trials_are_rows_but_never_reused_and_a_rerun_replaces_them(tmp_path):
    store = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS)
    store.append([record(0), {**record(1, status="failed"), "lost": True}])
    store.close()
    again = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS)
    assert again.get(key(1)) is None  # lost: the rerun tries it again
    assert again.scan().collect().height == 2
    again.append([record(1)])
    again.close()
    table = ResultStore(tmp_path / "s", readonly=True).scan().sort("number").collect()
    assert table["number"].to_list() == [0, 1] and table["status"].to_list() == ["complete", "complete"]


def test_keys_with_trailing_nul_bytes_are_found_in_the_sorted_index(tmp_path):
    # NumPy's fixed-width bytes drop trailing NULs when one element is read back.
    nul = [k for k in (key(i, "nul") for i in range(5000)) if k.endswith("00")][:3]
    assert nul
    store = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS)
    store.append([{**record(i), "key": k} for i, k in enumerate(nul)])
    store._index.merge()
    assert all(k in store for k in nul)
    store.close()
    again = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS)
    assert all(again.get(k)["number"] == i for i, k in enumerate(nul))


def test_returns_are_read_in_chunks_equal_to_single_reads(tmp_path):
    store = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS)
    store.append([record(i) if i % 3 else record(i, status="failed") for i in range(40)])
    store.close()
    numbers, offsets, lengths = store.returns_index()
    assert numbers.tolist() == [i for i in range(40) if i % 3]
    pick = numbers % 2 == 0  # every other one: not contiguous in the file
    for sel in (np.ones(len(numbers), dtype=bool), pick):
        seen = []
        for nums, chunk in store.iter_returns(numbers[sel], offsets[sel], 12, rows_per_chunk=5):
            for n, row in zip(nums.tolist(), chunk):
                np.testing.assert_array_equal(row, record(n)["returns"])
                seen.append(n)
        assert sorted(seen) == numbers[sel].tolist()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.sampled_from(["append", "commit", "crash"]), min_size=1, max_size=25),
       flush=st.integers(1, 6))
def test_whatever_the_crash_points_committed_trials_survive_once(tmp_path_factory, ops, flush):
    path = tmp_path_factory.mktemp("p") / "s"
    store = ResultStore(path, job=JOB, param_names=PARAMS, flush_rows=flush, flush_seconds=1e9)
    committed: set[int] = set()
    pending: set[int] = set()
    nxt = 0
    for op in ops:
        if op == "append":
            store.append([record(nxt)])
            pending.add(nxt)
            nxt += 1
            if store.rows == store._committed():  # flush_rows reached: committed
                committed |= pending
                pending = set()
        elif op == "commit":
            store.commit()
            committed |= pending
            pending = set()
        else:
            if store._fh is not None:
                store._fh.flush()
            store = ResultStore(path, job=JOB, param_names=PARAMS, flush_rows=flush, flush_seconds=1e9)
            pending = set()
    store.close()
    committed |= pending
    final = ResultStore(path, job=JOB, param_names=PARAMS)
    nums = final.scan().collect()["number"].to_list()
    assert sorted(nums) == sorted(committed) and len(nums) == len(set(nums))
    for n in committed:
        ptr = final.get(key(n))["returns"]
        np.testing.assert_array_equal(final.read_returns(ptr.offset, ptr.length), record(n)["returns"])


# -- the lazy result -------------------------------------------------------------------------


def both(tmp_path, recs):
    store = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS, flush_rows=7)
    store.append(recs)
    store.close()
    names = ["sharpe", "total_return"]
    kw = {"objective": "sharpe", "direction": "maximize", "meta": {"periods_per_year": 252.0}}
    lazy = OptimizationResult.from_store(ResultStore(tmp_path / "s", job=JOB), metric_names=names, **kw)
    mem = OptimizationResult.from_records(recs, PARAMS, names, "sharpe", "maximize", kw["meta"])
    mem.returns = {r["number"]: r["returns"] for r in recs if r["returns"] is not None}
    return lazy, mem


def test_a_stored_result_answers_like_the_one_in_memory(tmp_path):
    recs = [record(i) for i in range(30)] + [record(30, status="failed"), {**record(31), "metrics": {
        "sharpe": math.nan, "total_return": 0.0}}]
    lazy, mem = both(tmp_path, recs)
    assert lazy.lazy and not mem.lazy
    assert lazy.trials.equals(mem.trials)
    assert len(lazy) == 32 and lazy.n_complete == mem.n_complete == 31 and lazy.n_failed == 1
    assert lazy.top(5).equals(mem.top(5)) and lazy.best == mem.best
    assert lazy.filter(pl.col("sharpe") > 0).equals(mem.filter(pl.col("sharpe") > 0))
    assert lazy.filter(fast=3).equals(mem.trials.filter(pl.col("fast") == 3))
    assert lazy.pareto_front().equals(mem.pareto_front())
    assert lazy == mem
    assert sorted(lazy.returns) == sorted(mem.returns) and len(lazy.returns) == 31 and 30 not in lazy.returns
    np.testing.assert_array_equal(lazy.returns[7], mem.returns[7])
    with pytest.raises(KeyError):
        lazy.returns[30]
    out = lazy.to_parquet(tmp_path / "r.parquet")
    back = OptimizationResult.read_parquet(out)
    assert back.trials.equals(mem.trials) and back.objective == "sharpe"
    reopened = OptimizationResult.open(tmp_path / "s")
    assert reopened == lazy and reopened.store.readonly


def test_a_store_whose_sweep_never_finished_says_how_to_resume(tmp_path):
    ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS).close()
    with pytest.raises(SearchSpaceError, match="resume"):
        OptimizationResult.open(tmp_path / "s")


def test_holds_says_whether_a_number_has_a_row_with_that_key(tmp_path):
    """Twins (two numbers, one point) both have rows; a resume must not write either again."""
    store = ResultStore(tmp_path / "s", job=JOB, param_names=PARAMS, flush_rows=3)
    twin = {**record(4), "key": key(1), "attempts": 0}
    store.append([record(i) for i in range(4)] + [twin, record(5)])
    assert store.holds(1, key(1)) and store.holds(4, key(1))  # committed and pending rows
    assert not store.holds(4, key(4)) and not store.holds(6, key(6)) and not store.holds(-1, key(1))
    store.close()
    again = ResultStore(tmp_path / "s", job=JOB)
    assert again.holds(4, key(1)) and again.holds(5, key(5)) and not again.holds(5, key(1))
    assert again.get(key(1))["number"] in (1, 4)
