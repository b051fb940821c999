"""Sweep files: every key checked, errors that name the key, the objects they build."""

from __future__ import annotations

from pathlib import Path

import pytest

from rustybt_ray.engine import FixedBasisPointsSlippage, PerShare
from rustybt_ray.errors import ConfigError
from rustybt_ray.optimize import GridSearchAlgorithm, RandomSearchAlgorithm
from rustybt_ray.app.sweep_config import SweepConfig

GOOD = """
strategy = "rustybt_ray.examples.sma_crossover:SmaCrossover"
bundle = "demo"
start = 2015-01-01
end = "2016-12-31"
output = "out"
workers = 2

[costs]
commission = { model = "per_share", cost = 0.002 }
slippage = { model = "fixed_bps", basis_points = 3 }

[space]
constraints = ["fast < slow"]

[space.parameters]
fast = { type = "int", low = 5, high = 20, step = 5 }
slow = { type = "int", low = 30, high = 60, step = 15 }

[search]
algorithm = "grid"

[objective]
metric = "sharpe"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(text)
    return p


def test_a_good_file_builds_space_costs_and_algorithm(tmp_path):
    cfg = SweepConfig.from_toml(write(tmp_path, GOOD))
    assert (cfg.start, cfg.end, cfg.workers) == ("2015-01-01", "2016-12-31", 2)
    assert cfg.output == tmp_path / "out"
    space = cfg.build_space()
    assert space.names == ["fast", "slow"]
    assert len(list(space.grid())) == 12  # 4 x 3, all with fast < slow
    commission, slippage = cfg.build_costs()
    assert isinstance(commission, PerShare) and commission.cost == 0.002
    assert isinstance(slippage, FixedBasisPointsSlippage)
    assert isinstance(cfg.build_algorithm(space, resume=False), GridSearchAlgorithm)
    rnd = SweepConfig.from_toml(write(tmp_path, GOOD.replace('algorithm = "grid"', 'algorithm = "random"\nn_trials = 7\nseed = 1')))
    alg = rnd.build_algorithm(rnd.build_space(), resume=False)
    assert isinstance(alg, RandomSearchAlgorithm) and alg.n_trials == 7 and alg.seed == 1


def test_a_strategy_path_is_relative_to_the_file(tmp_path):
    cfg = SweepConfig.from_toml(write(tmp_path, GOOD.replace("rustybt_ray.examples.sma_crossover:SmaCrossover",
                                                             "strategies/mine.py:Mine")))
    assert cfg.strategy == f"{tmp_path / 'strategies/mine.py'}:Mine"


@pytest.mark.parametrize("change, message", [
    (("[search]", "[serch]"), r"serch: unknown key; did you mean 'search'\?"),
    (('algorithm = "grid"', 'algorithm = "grid"\nn_trails = 5'), r"search.n_trails: unknown key; did you mean 'n_trials'\?"),
    (('algorithm = "grid"', 'algorithm = "annealing"'), r"search.algorithm: must be one of grid, random, tpe"),
    (('algorithm = "grid"', 'algorithm = "tpe"'), r"search.n_trials: required for algorithm 'tpe'"),
    (("workers = 2", 'workers = "two"'), r"workers: expected int, got 'two'"),
    (("workers = 2", "workers = 0"), r"workers: must be >= 1"),
    (('type = "int", low = 5', 'type = "integer", low = 5'), r"space.parameters.fast.type: must be 'int', 'float' or 'categorical'"),
    (("low = 5, high = 20", "low = 5, hi = 20"), r"space.parameters.fast.hi: unknown key; did you mean 'high'\?"),
    (("low = 5, high = 20", "low = 25, high = 20"), r"space.parameters.fast: "),
    (('constraints = ["fast < slow"]', 'constraints = ["fast < sloww"]'), r"space: "),
    (('model = "per_share"', 'model = "per_trade"'), r"costs.commission.model: must be one of"),
    (("cost = 0.002", "fee = 0.002"), r"costs.commission: "),
    (('metric = "sharpe"', 'metric = "sharpe"\nmetrics = ["sortino"]'), r"objective: give either metric or metrics"),
    (('output = "out"', 'output = "out"\nfill_price = "vwap"'), r"fill_price: must be 'open' or 'close'"),
    (('end = "2016-12-31"', "end = 20161231"), r"end: expected a date"),
])
def test_each_error_names_its_key(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError, match=message):
        cfg = SweepConfig.from_toml(write(tmp_path, GOOD.replace(old, new, 1)))
        cfg.build_space()
        cfg.build_costs()


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SweepConfig.from_toml(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        SweepConfig.from_toml(write(tmp_path, "strategy = "))
    with pytest.raises(ConfigError, match="strategy: missing"):
        SweepConfig.from_toml(write(tmp_path, GOOD.replace('strategy = "rustybt_ray.examples.sma_crossover:SmaCrossover"', "")))
