"""``rustybt-ray results DIR`` on a results store (``run(..., store=DIR)``): finished, unfinished, damaged."""

from __future__ import annotations

import numpy as np
import polars as pl

from rustybt_ray.app.cli import main
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.store import ResultStore

JOB = {"strategy": "m.S:abc", "bundle_version": "v1", "start": "2020-01-02", "end": "2020-12-31"}


def records(n: int) -> list[dict]:
    rng = np.random.default_rng(5)
    return [{"key": f"{i:064x}", "number": i, "params": {"fast": i % 9 + 1, "slow": 20 + i},
             "metrics": {"sharpe": float(rng.normal()), "max_drawdown": float(rng.uniform(0.05, 0.5))},
             "status": "complete", "error": None, "duration_s": 0.01, "worker": i % 2, "attempts": 1,
             "returns": rng.normal(0, 0.01, 10).astype(np.float32)} for i in range(n)]


def write_store(path, recs, finish: bool, objective: str = "sharpe", direction: str = "maximize") -> None:
    store = ResultStore(path, job=JOB, param_names=["fast", "slow"], flush_rows=50)
    store.append(recs)
    store.commit()
    if finish:
        OptimizationResult.from_store(store, objective=objective, direction=direction)
    store.close()


def shown_numbers(out: str) -> list[int]:
    """The trial numbers of the printed table's rows (its first column)."""
    rows = [ln.strip("│ ").split("┆")[0].strip() for ln in out.splitlines() if "┆" in ln]
    return [int(r) for r in rows if r.isdigit()]


def test_results_of_a_finished_store_rank_by_its_saved_objective(tmp_path, capsys):
    recs = records(300)
    write_store(tmp_path / "s", recs, finish=True, objective="max_drawdown", direction="minimize")
    assert main(["results", str(tmp_path / "s"), "--top", "4"]) == 0
    out = capsys.readouterr().out
    expected = pl.DataFrame([{"number": r["number"], **r["metrics"]} for r in recs]).sort(
        ["max_drawdown", "number"])["number"].head(4).to_list()
    assert "finished; 300 trials, 300 complete; best by max_drawdown (minimize)" in out
    assert shown_numbers(out) == expected


def test_results_of_a_store_whose_driver_died_rank_its_committed_trials_by_sharpe(tmp_path, capsys):
    recs = records(120)
    write_store(tmp_path / "s", recs, finish=False)
    assert main(["results", str(tmp_path / "s"), "--top", "3"]) == 0
    out = capsys.readouterr().out
    best = sorted(recs, key=lambda r: -r["metrics"]["sharpe"])[:3]
    assert "stopped before the end" in out and "120 trials" in out and "resume" in out
    assert shown_numbers(out) == [r["number"] for r in best]
    ResultStore(tmp_path / "empty", job=JOB, param_names=["fast"]).close()
    assert main(["results", str(tmp_path / "empty")]) == 0
    assert "no trials committed yet" in capsys.readouterr().out


def test_results_of_a_damaged_store_is_a_clear_error_without_a_traceback(tmp_path, capsys):
    write_store(tmp_path / "s", records(10), finish=True)
    (tmp_path / "s" / "store.json").write_text("{torn")
    assert main(["results", str(tmp_path / "s")]) != 0
    err = capsys.readouterr().err
    assert "store.json" in err and "unreadable results store header" in err and "Traceback" not in err
