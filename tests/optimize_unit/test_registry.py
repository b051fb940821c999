"""The algorithm registry (sweep files and walk-forward build from it) and the trial status enum."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from rustybt_ray.app.sweep_config import ALGORITHMS, SweepConfig
from rustybt_ray.cluster.protocol import STATUSES, TrialStatus
from rustybt_ray.errors import ConfigError, SearchSpaceError
from rustybt_ray.optimize import DiscreteParameter, GridSearchAlgorithm, OptunaSearch, ParameterSpace
from rustybt_ray.optimize import registry


def space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 5, 20, 5), DiscreteParameter("slow", 30, 60, 15)],
                          constraints=["fast < slow"])


def test_every_sweep_file_algorithm_is_in_the_registry():
    assert ALGORITHMS == registry.ALGORITHMS
    assert set(registry.OPTUNA_ALGORITHMS) == set(ALGORITHMS) - {"grid", "random"}
    for name in ALGORITHMS:
        if name in ("gp",):  # needs torch, not installed everywhere
            continue
        opts = {} if name == "grid" else {"n_trials": 3, "seed": 0}
        algo = registry.build_algorithm(name, space(), opts)
        assert algo.space is not None


def test_an_option_the_algorithm_cannot_use_is_refused_not_dropped():
    with pytest.raises(SearchSpaceError, match="'grid' does not take constraints"):
        registry.build_algorithm("grid", space(), {"constraints": [["n_trades", ">=", 1]]})
    with pytest.raises(SearchSpaceError, match="unknown search option"):
        registry.build_algorithm("tpe", space(), {"n_trails": 3})
    with pytest.raises(SearchSpaceError, match="unknown search algorithm"):
        registry.build_algorithm("bayes", space(), {})


def test_window_factory_honours_pruner_constraints_and_enqueue():
    make = registry.window_factory("tpe", {"n_trials": 4, "seed": 1, "pruner": "median",
                                           "constraints": [["n_trades", ">=", 2]],
                                           "enqueue": [{"fast": 5, "slow": 45}]})
    a, b = make(space()), make(space())
    assert a is not b  # one fresh search per window
    assert isinstance(a, OptunaSearch) and isinstance(a.pruner, optuna.pruners.MedianPruner)
    assert a._constraint_fn is not None and a._enqueue == [{"fast": 5, "slow": 45}]
    a.start(None, [("sharpe", "maximize")])
    assert a.ask(1)[0].params == {"fast": 5, "slow": 45}  # the enqueued point comes first
    grid = registry.window_factory("grid", {"pruner": "halving"})(space())
    assert isinstance(grid, GridSearchAlgorithm) and isinstance(grid.pruner, optuna.pruners.SuccessiveHalvingPruner)


@pytest.mark.parametrize("key, value", [("storage", "sqlite:///x.db"), ("study_name", "shared")])
def test_window_factory_refuses_a_shared_study(key, value):
    with pytest.raises(SearchSpaceError, match=f"walk-forward does not support {key}"):
        registry.window_factory("tpe", {"n_trials": 4, key: value})


WF = """
strategy = "rustybt_ray.examples.sma_crossover:SmaCrossover"
output = "out"
[space.parameters]
fast = {{ type = "int", low = 5, high = 20, step = 5 }}
slow = {{ type = "int", low = 30, high = 60, step = 15 }}
[search]
algorithm = "tpe"
n_trials = 4
{search}
[walk_forward]
train_period_days = 252
test_period_days = 63
"""


def test_walk_forward_sweep_files_keep_pruner_constraints_and_enqueue(tmp_path: Path):
    text = WF.format(search='pruner = "median"\nconstraints = [["n_trades", ">=", 2]]\n'
                            'enqueue = [{ fast = 10, slow = 45 }]')
    (tmp_path / "s.toml").write_text(text)
    cfg = SweepConfig.from_toml(tmp_path / "s.toml")
    algo = cfg.build_window_factory()(cfg.build_space())
    assert isinstance(algo.pruner, optuna.pruners.MedianPruner)
    assert algo._constraint_fn is not None and algo._enqueue == [{"fast": 10, "slow": 45}]


def test_walk_forward_sweep_file_with_storage_is_a_config_error(tmp_path: Path):
    (tmp_path / "s.toml").write_text(WF.format(search='storage = "sqlite:///study.db"'))
    cfg = SweepConfig.from_toml(tmp_path / "s.toml")
    with pytest.raises(ConfigError, match="walk-forward does not support storage"):
        cfg.build_window_factory()


def test_trial_status_is_a_string_for_tables_and_journals():
    assert TrialStatus.COMPLETE == "complete" and TrialStatus("pruned") is TrialStatus.PRUNED
    assert STATUSES == ("complete", "failed", "pruned")
    assert json.dumps({"s": TrialStatus.FAILED}) == '{"s": "failed"}' and str(TrialStatus.FAILED) == "failed"
