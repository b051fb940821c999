"""The results journal: trial keys, persistence, torn lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rustybt_ray.errors import ConfigError
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached
from rustybt_ray.optimize.journal import TrialJournal, strategy_fingerprint, trial_key

JOB = {"strategy": "s", "bundle_version": "abc", "start": "2020-01-02", "end": "2020-12-31"}


def test_key_depends_on_everything_that_decides_the_numbers():
    base = trial_key(JOB, {"fast": 5, "slow": 20})
    assert trial_key(dict(JOB), {"slow": 20, "fast": 5}) == base  # order of names is irrelevant
    assert trial_key(JOB, {"fast": 5.0, "slow": 20}) == base  # 5 and 5.0 are the same parameter value
    assert trial_key(JOB, {"fast": np.int64(5), "slow": np.float64(20.0)}) == base
    for change in ({"bundle_version": "abd"}, {"start": "2020-01-03"}, {"end": "2021-01-01"}, {"strategy": "t"}):
        assert trial_key(JOB | change, {"fast": 5, "slow": 20}) != base, change
    assert trial_key(JOB, {"fast": 6, "slow": 20}) != base
    assert trial_key(JOB, {"fast": 5, "slow": 20, "x": 0.1}) != base
    assert trial_key(JOB, {"fast": 0.1 + 0.2, "slow": 20}) != trial_key(JOB, {"fast": 0.3, "slow": 20})


def test_strategy_fingerprint_follows_the_source():
    a, b = strategy_fingerprint(SmaCrossover), strategy_fingerprint(SmaCrossoverCached)
    assert a.startswith("rustybt_ray.examples.sma_crossover.SmaCrossover:")
    assert a != b
    ns: dict = {}
    exec("class S:\n    x = 1\n", ns)  # no source file: the name alone
    assert strategy_fingerprint(ns["S"]).split(":")[0].endswith(".S")


def test_journal_round_trips_records_with_returns_and_nan(tmp_path):
    path = tmp_path / "j.jsonl"
    j = TrialJournal(path)
    r = np.array([0.01, -0.02, np.nan], dtype=np.float32)
    j.append([
        {"key": "k1", "params": {"fast": np.int64(5)}, "metrics": {"sharpe": 1.5, "sortino": float("nan")},
         "status": "complete", "error": None, "duration_s": 0.1, "worker": 0, "returns": r},
        {"key": "k2", "params": {"fast": 7}, "metrics": None, "status": "failed", "error": "boom",
         "duration_s": 0.0, "worker": 1},
    ])
    j.close()
    again = TrialJournal(path)
    assert len(again) == 2 and again.loaded == 2
    rec = again.get("k1")
    assert rec["params"] == {"fast": 5} and rec["metrics"]["sharpe"] == 1.5
    assert np.isnan(rec["metrics"]["sortino"])
    np.testing.assert_array_equal(rec["returns"], r)
    assert again.get("k2")["error"] == "boom"
    assert again.get("missing") is None
    # A complete trial journaled without returns does not satisfy a run that needs them.
    j2 = TrialJournal(None)
    j2.append([{"key": "k", "params": {}, "metrics": {"sharpe": 1.0}, "status": "complete"}])
    assert j2.get("k") is not None and j2.get("k", need_returns=True) is None


def test_torn_last_line_is_skipped_but_garbage_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    j = TrialJournal(path)
    j.append([{"key": f"k{i}", "params": {"i": i}, "metrics": {"m": i}, "status": "complete"} for i in range(3)])
    j.close()
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:25])  # a driver killed mid-write
    again = TrialJournal(path)
    assert len(again) == 3 and again.skipped_lines == 1
    lines = text.splitlines()
    path.write_text("\n".join([lines[0], "not json", lines[1], lines[2]]) + "\n")
    with pytest.raises(ConfigError, match="line 2"):
        TrialJournal(path)
    path.write_text(json.dumps({"hello": 1}) + "\n")
    with pytest.raises(ConfigError, match="not a rustybt_ray journal record"):
        TrialJournal(path)


def _rec(i: int) -> dict:
    return {"key": f"k{i}", "params": {"i": i}, "metrics": {"m": float(i)}, "status": "complete",
            "returns": np.full(50, i, dtype=np.float32)}


def _keys_on_disk(path) -> list[str]:
    return [json.loads(line)["key"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("torn_bytes", [1, 25, None])  # a byte, a prefix, a whole record lacking only its newline
def test_a_torn_journal_resumed_three_times_loses_and_duplicates_nothing(tmp_path, torn_bytes):
    """Each resume runs what its journal lacks, as a sweep does, and its space grows by one point."""
    path = tmp_path / "j.jsonl"
    j = TrialJournal(path)
    j.append([_rec(i) for i in range(3)])
    j.close()
    line = json.dumps({**_rec(3), "format": 1, "returns": None}, separators=(",", ":"))
    with open(path, "a", encoding="utf-8") as fh:  # a driver killed while writing trial 3
        fh.write(line if torn_bytes is None else line[:torn_bytes])
    for resume in range(3):
        j = TrialJournal(path)
        wanted = [f"k{i}" for i in range(5 + resume)]
        missing = [k for k in wanted if k not in j]
        expected = (["k4"] if torn_bytes is None else ["k3", "k4"]) if resume == 0 else [wanted[-1]]
        assert missing == expected, (resume, missing)
        j.append([_rec(int(k[1:])) for k in missing])
        j.close()
    final = TrialJournal(path)
    keys = _keys_on_disk(path)
    assert sorted(keys, key=lambda k: int(k[1:])) == [f"k{i}" for i in range(7)], keys  # 0 lost, 0 duplicated
    assert final.skipped_lines == 0 and len(final) == 7


def test_the_journal_file_gets_the_umask_mode(tmp_path):
    import os
    import stat

    from rustybt_ray.files import file_mode

    path = tmp_path / "sub" / "j.jsonl"
    j = TrialJournal(path)
    j.append([_rec(0)])
    j.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == file_mode()
