"""A second run() of the same optimizer searches again (issue 9, defect 1), and walk-forward pruning per window."""

from __future__ import annotations

import time

import optuna
import pytest

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverCached
from rustybt_ray.optimization import WorkerPool
from rustybt_ray.optimize import (
    DiscreteParameter,
    GridSearchAlgorithm,
    OptunaSearch,
    ParallelOptimizer,
    ParameterSpace,
    RandomSearchAlgorithm,
    SearchAlgorithm,
    TrialRequest,
    WalkForwardOptimizer,
    WindowConfig,
)

START, END = "2018-01-01", "2019-06-30"


def space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 5, 20, 5), DiscreteParameter("slow", 30, 60, 15)],
                          constraints=["fast < slow"])


@pytest.fixture(scope="module")
def pool(ray_session):
    with WorkerPool(2) as p:
        yield p


def table(result):
    return result.trials.select(["number", "fast", "slow", "sharpe", "status"])


@pytest.mark.parametrize("make", [lambda: GridSearchAlgorithm(space()),
                                  lambda: RandomSearchAlgorithm(space(), n_trials=5, seed=3)], ids=["grid", "random"])
def test_a_second_run_repeats_grid_and_random_searches(pool, make):
    opt = ParallelOptimizer(make(), pool=pool, progress=False)
    first = opt.run(SmaCrossover, "demo", START, END)
    second = opt.run(SmaCrossover, "demo", START, END)
    assert len(first) > 0 and first.n_complete == len(first)
    assert table(second).equals(table(first))  # the same trials, the same numbers


def test_a_second_run_continues_an_optuna_study_for_another_n_trials(pool):
    algo = OptunaSearch(space(), sampler="tpe", n_trials=4, seed=0)
    opt = ParallelOptimizer(algo, pool=pool, progress=False)
    first = opt.run(SmaCrossover, "demo", START, END)
    second = opt.run(SmaCrossover, "demo", START, END)
    assert len(first) == 4 and len(second) == 4
    ran = [t for t in algo.study.trials if t.state.is_finished() and "rustybt_ray_not_run" not in t.user_attrs]
    assert len(ran) == 8


class _NoRewind(SearchAlgorithm):
    """A user's algorithm that does not implement rewind()."""

    def __init__(self) -> None:
        self._left = [{"fast": 5, "slow": 30}]

    def ask(self, n: int = 1) -> list[TrialRequest]:
        return [self._new_trial(self._left.pop())] if self._left and n else []

    def tell(self, number, values, status, metrics=None) -> None:
        self._record(number, values, status)

    @property
    def is_finished(self) -> bool:
        return not self._left


def test_an_algorithm_without_rewind_refuses_a_second_run(pool):
    opt = ParallelOptimizer(_NoRewind(), pool=pool, progress=False)
    assert len(opt.run(SmaCrossover, "demo", START, END)) == 1
    with pytest.raises(SearchSpaceError, match="cannot run a second time"):
        opt.run(SmaCrossover, "demo", START, END)


class EveryOtherPruner(optuna.pruners.BasePruner):
    """Stops every odd trial of its study: which trials it judges shows which study (window) it sees."""

    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1


class SlowSma(SmaCrossoverCached):
    """Slow enough that a pruner's decision (read one checkpoint later, never awaited) arrives mid-run."""

    def handle_data(self, data) -> None:
        time.sleep(0.0005)
        super().handle_data(data)


def test_walk_forward_prunes_train_trials_per_window_and_never_validation_or_test(pool):
    wf = WalkForwardOptimizer(space(), WindowConfig(252, 63, 63, 126), pool=pool, top_k=2, progress=False)
    res = wf.run(SlowSma, "demo", "2016-01-01", "2018-12-31", pruner=EveryOtherPruner(),
                 checkpoint_every=21)
    assert res.windows.height >= 2
    for train in res.train_results:
        assert train.n_pruned > 0 and train.n_complete > 0
    # Validation and test trials are never judged: every window was tested.
    assert res.windows["status"].to_list() == ["ok"] * res.windows.height
    assert res.windows["selected_by"].to_list() == ["validation"] * res.windows.height
