"""The ``rustybt-ray`` command: real runs on the demo bundle and real ingests into a temp root."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from rustybt_ray import load_bundle, run_algorithm
from rustybt_ray.app.cli import load_strategy, main, parse_param
from rustybt_ray.errors import StrategyError
from rustybt_ray.examples.sma_crossover import SmaCrossover

STRATEGY_FILE = '''
from rustybt_ray import TradingAlgorithm

class BuyAndHold(TradingAlgorithm):
    weight = 0.5

    def handle_data(self, data):
        self.order_target_percent(self.asset, self.weight)
'''


@pytest.fixture()
def bundle_root(tmp_path, monkeypatch):
    root = tmp_path / "bundles"
    monkeypatch.setenv("RUSTYBT_BUNDLE_ROOT", str(root))
    return root


def test_run_json_matches_library_call(capsys):
    code = main(["run", "--start", "2021-01-01", "--end", "2021-12-31", "--param", "fast=5", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    direct = run_algorithm(SmaCrossover, "demo", "2021-01-01", "2021-12-31", params={"fast": 5})
    assert out["params"] == {"fast": 5, "slow": 50}
    assert out["metrics"]["final_value"] == pytest.approx(direct.final_value, rel=1e-12)
    assert out["metrics"]["n_transactions"] == direct.metrics["n_transactions"]


def test_run_strategy_file_with_param(tmp_path, capsys):
    path = tmp_path / "bah.py"
    path.write_text(STRATEGY_FILE)
    assert main(["run", f"{path}:BuyAndHold", "--start", "2022-01-03", "--end", "2022-03-31",
                 "--param", "weight=0.25", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == {"weight": 0.25}
    # Buy-and-hold of 25% of AAPL: the equity moves with a quarter of AAPL's price move.
    b = load_bundle("demo")
    assert out["metrics"]["n_transactions"] >= 1
    assert out["strategy"] == "BuyAndHold"
    assert b.symbols[0] == "AAPL"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--param", "nope=3"], "has no parameter 'nope'"),
        (["run", "--bundle", "no_such_bundle"], "no_such_bundle"),
        (["run", "missing_file.py:X"], "does not exist"),
        (["run", "rustybt_ray.examples.sma_crossover:Nope"], "has no class 'Nope'"),
        (["run", "--start", "1990-01-01", "--end", "1990-12-31"], "no bars between"),
        (["run", "--param", "fast"], "name=value"),
    ],
)
def test_errors_are_one_line_and_exit_2(argv, message, capsys, bundle_root):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_ingest_then_list_then_run(tmp_path, capsys, bundle_root):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    demo = load_bundle("demo").slice("2023-01-01", "2023-06-30")
    frame = demo.to_long_frame()
    for sym in ("AAPL", "MSFT"):
        frame.filter(pl.col("symbol") == sym).drop("symbol").with_columns(
            pl.col("date").dt.date()).write_csv(csv_dir / f"{sym}.csv")
    assert main(["ingest", "two", "--csv-dir", str(csv_dir)]) == 0
    assert "2 symbols" in capsys.readouterr().out
    assert main(["bundles"]) == 0
    assert "two" in capsys.readouterr().out
    assert main(["run", "--bundle", "two", "--param", "slow=20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["n_bars"] == float(demo.shape[0])


def test_parse_param_literals():
    assert parse_param("fast=10") == ("fast", 10)
    assert parse_param("x=0.5") == ("x", 0.5)
    assert parse_param("flag=True") == ("flag", True)
    assert parse_param("name=abc") == ("name", "abc")
    with pytest.raises(StrategyError):
        parse_param("=3")


def test_load_strategy_rejects_non_strategies(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("class NotAStrategy:\n    pass\n")
    with pytest.raises(StrategyError, match="not a TradingAlgorithm"):
        load_strategy(f"{path}:NotAStrategy")


def test_console_script_runs_in_a_fresh_process():
    proc = subprocess.run(
        [sys.executable, "-m", "rustybt_ray", "run", "--start", "2024-01-01", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)["metrics"]
    assert np.isfinite(metrics["sharpe"]) and metrics["n_bars"] > 200
