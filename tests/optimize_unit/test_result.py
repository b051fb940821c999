"""OptimizationResult: best/top by direction with NaNs and failures, Parquet round trip, atomic writes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.result import OptimizationResult

NAN = float("nan")
META = {"strategy": "SmaCross", "bundle": "demo", "version": "ab12", "start": "2015-01-01", "end": "2024-12-31",
        "objectives": [["sharpe", "maximize"]], "n": 3, "x": 1.5}


def rec(number: int, sharpe: float | None, *, fast: int = 10, mode: str = "a", t: float = 0.5,
        status: str = "complete", error: str | None = None) -> dict:
    """A scheduler record."""
    return {
        "number": number,
        "params": {"fast": fast, "mode": mode, "t": t},
        "metrics": None if status == "failed" else {"sharpe": sharpe, "total_return": 0.1 * number},
        "status": status,
        "error": error,
        "duration_s": 0.25 * number,
        "worker": number % 2,
        "attempts": 1 if status == "complete" else 4,
    }


def make(records: list[dict], direction: str = "maximize", meta: dict | None = None) -> OptimizationResult:
    return OptimizationResult.from_records(
        records, ["fast", "mode", "t"], ["sharpe", "total_return"], "sharpe", direction, META if meta is None else meta
    )


RECORDS = [
    rec(3, 0.5, fast=13),
    rec(0, 1.0, fast=10),
    rec(1, NAN, fast=11),
    rec(2, None, status="failed", error="ValueError: boom", fast=12),
    rec(4, 2.0, fast=14, mode="b"),
    rec(5, -1.0, fast=15),
]


def test_table_columns_types_and_order() -> None:
    r = make(RECORDS)
    assert r.trials.columns == ["number", "fast", "mode", "t", "sharpe", "total_return", "status", "error",
                                "duration_s", "worker", "attempts"]
    assert r.trials["number"].to_list() == [0, 1, 2, 3, 4, 5]
    schema = r.trials.schema
    assert schema["number"] == pl.Int64 and schema["fast"] == pl.Int64 and schema["mode"] == pl.String
    assert schema["sharpe"] == pl.Float64 and schema["worker"] == pl.Int64 and schema["attempts"] == pl.Int64
    assert schema["status"] == pl.String and schema["error"] == pl.String and schema["duration_s"] == pl.Float64
    failed = r.trials.filter(pl.col("status") == "failed").row(0, named=True)
    assert failed["sharpe"] is None and failed["error"] == "ValueError: boom" and failed["fast"] == 12
    assert math.isnan(r.trials.filter(pl.col("number") == 1)["sharpe"][0])  # NaN stays NaN, not null
    assert (r.n_complete, r.n_failed, len(r)) == (5, 1, 6)
    assert (r.objective, r.direction, r.param_names, r.metric_names) == (
        "sharpe", "maximize", ["fast", "mode", "t"], ["sharpe", "total_return"])


def test_best_and_top_maximize() -> None:
    r = make(RECORDS)
    assert r.best == {"number": 4, "params": {"fast": 14, "mode": "b", "t": 0.5},
                      "metrics": {"sharpe": 2.0, "total_return": pytest.approx(0.4)}}
    assert type(r.best["params"]["fast"]) is int
    assert r.best_params == {"fast": 14, "mode": "b", "t": 0.5}
    assert r.top(10)["number"].to_list() == [4, 0, 3, 5, 1]  # NaN last, failed left out
    assert r.top(2)["number"].to_list() == [4, 0]
    assert r.top(0).height == 0


def test_best_and_top_minimize() -> None:
    r = make(RECORDS, "minimize")
    assert r.best["number"] == 5
    assert r.top(10)["number"].to_list() == [5, 3, 0, 4, 1]


def test_ties_broken_by_number() -> None:
    r = make([rec(2, 1.0), rec(0, 1.0), rec(1, 0.0)])
    assert r.top(3)["number"].to_list() == [0, 2, 1]


def test_no_best_when_all_failed_or_nan() -> None:
    r = make([rec(0, None, status="failed", error="x"), rec(1, NAN)])
    assert r.best is None and r.best_params is None
    assert "no complete trial" in repr(r)
    empty = make([])
    assert empty.best is None and len(empty) == 0 and empty.top(5).height == 0


def test_infinite_objective_can_be_best() -> None:
    assert make([rec(0, 1.0), rec(1, math.inf)]).best["number"] == 1
    assert make([rec(0, 1.0), rec(1, -math.inf)], "minimize").best["number"] == 1


def test_repr() -> None:
    text = repr(make(RECORDS))
    assert "sharpe" in text and "trials=6" in text and "failed=1" in text and "#4" in text


def test_to_pandas() -> None:
    df = make(RECORDS).to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 6 and list(df["number"]) == [0, 1, 2, 3, 4, 5]


def test_mixed_numeric_param_becomes_float() -> None:
    r = make([rec(0, 1.0, t=1), rec(1, 2.0, t=0.5)])
    assert r.trials.schema["t"] == pl.Float64 and r.trials["t"].to_list() == [1.0, 0.5]


def test_name_collisions_and_bad_arguments() -> None:
    with pytest.raises(SearchSpaceError, match="status"):
        OptimizationResult.from_records([], ["status"], ["sharpe"], "sharpe", "maximize", {})
    with pytest.raises(SearchSpaceError, match="twice"):
        OptimizationResult.from_records([], ["sharpe"], ["sharpe"], "sharpe", "maximize", {})
    with pytest.raises(SearchSpaceError, match="objective"):
        OptimizationResult.from_records([], ["a"], ["sharpe"], "calmar", "maximize", {})
    with pytest.raises(SearchSpaceError, match="direction"):
        OptimizationResult.from_records([], ["a"], ["sharpe"], "sharpe", "up", {})
    with pytest.raises(SearchSpaceError, match="status"):
        make([rec(0, 1.0, status="done")])
    with pytest.raises(SearchSpaceError, match="lacks"):
        OptimizationResult(pl.DataFrame({"number": [1]}), objective="s", direction="maximize",
                           param_names=[], metric_names=["s"])


@pytest.mark.parametrize("records", [RECORDS, []], ids=["trials", "empty"])
def test_parquet_round_trip_exact(tmp_path: Path, records: list[dict]) -> None:
    r = make(records)
    path = r.to_parquet(tmp_path / "sweep.parquet")
    back = OptimizationResult.read_parquet(path)
    assert_frame_equal(back.trials, r.trials)
    assert back.meta == META
    assert (back.objective, back.direction, back.param_names, back.metric_names) == (
        r.objective, r.direction, r.param_names, r.metric_names)
    assert back == r
    assert os.listdir(tmp_path) == ["sweep.parquet"]  # no temp files left


def test_parquet_is_plain_parquet(tmp_path: Path) -> None:
    path = make(RECORDS).to_parquet(tmp_path / "s.parquet")
    assert pl.read_parquet(path).height == 6


def test_overwrite_replaces(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    make(RECORDS).to_parquet(path)
    make(RECORDS[:2]).to_parquet(path)
    assert len(OptimizationResult.read_parquet(path)) == 2
    assert os.listdir(tmp_path) == ["s.parquet"]


def test_crash_during_write_leaves_no_partial_file(tmp_path: Path) -> None:
    bad = make(RECORDS, meta={"when": object()})  # not JSON-serializable
    path = tmp_path / "s.parquet"
    with pytest.raises(TypeError):
        bad.to_parquet(path)
    assert os.listdir(tmp_path) == []
    # an existing file survives a failed overwrite untouched
    make(RECORDS).to_parquet(path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        bad.to_parquet(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["s.parquet"]


def test_read_foreign_parquet_errors(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(path)
    with pytest.raises(SearchSpaceError, match="not an OptimizationResult"):
        OptimizationResult.read_parquet(path)
