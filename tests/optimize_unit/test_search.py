"""The ask/tell protocol: grid and random search."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.search import (
    GridSearchAlgorithm,
    RandomSearchAlgorithm,
    SearchAlgorithm,
    TrialRequest,
)
from rustybt_ray.optimize.space import (
    CategoricalParameter,
    ContinuousParameter,
    DiscreteParameter,
    ParameterSpace,
)

MAX = [("sharpe", "maximize")]
MIN = [("drawdown", "minimize")]


def _space(*constraints) -> ParameterSpace:
    return ParameterSpace(
        [DiscreteParameter("fast", 5, 20, step=5), DiscreteParameter("slow", 10, 30, step=10)],
        constraints=list(constraints),
    )


def _rich_space() -> ParameterSpace:
    return ParameterSpace(
        [
            DiscreteParameter("fast", 2, 40),
            DiscreteParameter("slow", 10, 200, step=10),
            ContinuousParameter("t", 0.001, 0.1, log=True),
            CategoricalParameter("m", ["a", "b"]),
        ],
        ["fast < slow"],
    )


def _drain(alg: SearchAlgorithm, n: int = 1) -> list[TrialRequest]:
    out: list[TrialRequest] = []
    while not alg.is_finished:
        got = alg.ask(n)
        assert got, "an unfinished grid/random search always has a trial to give"
        out.extend(got)
    return out


# -- grid -----------------------------------------------------------------------------


def test_grid_order_count_and_numbers() -> None:
    alg = GridSearchAlgorithm(_space())
    alg.start(None, MAX)
    assert alg.n_total == 12
    trials = _drain(alg, n=5)
    assert [t.number for t in trials] == list(range(12))
    assert [t.params for t in trials] == list(_space().grid())
    assert alg.is_finished and alg.ask(10) == []
    assert alg.n_asked == 12


def test_grid_respects_constraints_and_counts_them() -> None:
    alg = GridSearchAlgorithm(_space("fast < slow"))
    alg.start(None, MAX)
    assert alg.n_total == 8
    trials = _drain(alg, n=3)
    assert len(trials) == 8
    assert all(t.params["fast"] < t.params["slow"] for t in trials)


def test_grid_ask_batches_do_not_change_order() -> None:
    one = [t.params for t in _drain(GridSearchAlgorithm(_space()), 1)]
    many = [t.params for t in _drain(GridSearchAlgorithm(_space()), 7)]
    assert one == many


def test_grid_guide_example_runs_with_warning() -> None:
    # The guide: GridSearchAlgorithm(param_space) with a continuous parameter and no points.
    param_space = ParameterSpace(parameters=[
        DiscreteParameter(name="lookback", min_value=10, max_value=100, step=10),
        ContinuousParameter(name="threshold", min_value=0.001, max_value=0.1),
    ])
    with pytest.warns(UserWarning, match=r"threshold.*points=\{'threshold': k\}"):
        alg = GridSearchAlgorithm(param_space)
    assert alg.n_total == 50
    trials = _drain(alg, 16)
    assert len(trials) == 50
    assert sorted({t.params["threshold"] for t in trials}) == [0.001, 0.02575, 0.0505, 0.07525, 0.1]


def test_grid_explicit_points_no_warning() -> None:
    space = ParameterSpace([ContinuousParameter("t", 0.0, 1.0), ContinuousParameter("u", 1.0, 2.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GridSearchAlgorithm(space, points={"t": 3, "u": 2}).n_total == 6
        assert GridSearchAlgorithm(space, points=4).n_total == 16
    with pytest.warns(UserWarning, match="u"):
        assert GridSearchAlgorithm(space, points={"t": 3}).n_total == 15
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SearchSpaceError, match="nope"):
            GridSearchAlgorithm(space, points={"nope": 3})
        with pytest.raises(SearchSpaceError):
            GridSearchAlgorithm(space, points={"t": 0})


def test_grid_space_from_start() -> None:
    alg = GridSearchAlgorithm()
    assert alg.n_total is None
    alg.start(_space(), MAX)
    assert alg.space is not None and alg.n_total == 12
    with pytest.raises(SearchSpaceError, match="no parameter space"):
        GridSearchAlgorithm().ask(1)


# -- random ---------------------------------------------------------------------------


def test_random_reproducible_by_seed() -> None:
    a = RandomSearchAlgorithm(_rich_space(), n_trials=20, seed=7)
    b = RandomSearchAlgorithm(_rich_space(), n_trials=20, seed=7)
    c = RandomSearchAlgorithm(_rich_space(), n_trials=20, seed=8)
    pa, pb, pc = ([t.params for t in _drain(x, 3)] for x in (a, b, c))
    assert pa == pb and pa != pc
    assert all(p["fast"] < p["slow"] for p in pa)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=30), seed=st.integers(0, 2**40))
def test_random_independent_of_ask_batch_sizes(sizes: list[int], seed: int) -> None:
    ref = [t.params for t in _drain(RandomSearchAlgorithm(_rich_space(), n_trials=15, seed=seed), 1)]
    alg = RandomSearchAlgorithm(_rich_space(), n_trials=15, seed=seed)
    got: list[TrialRequest] = []
    for n in sizes:
        got.extend(alg.ask(n))
    got.extend(_drain(alg, 4))
    assert [t.number for t in got] == list(range(15))
    assert [t.params for t in got] == ref
    assert [alg.params_for(i) for i in range(15)] == ref


def test_random_argument_forms() -> None:
    space = _space()
    forms = [
        RandomSearchAlgorithm(space, n_trials=5, seed=3),
        RandomSearchAlgorithm(space, 5, 3),
        RandomSearchAlgorithm(param_space=space, n_trials=5, seed=3),
        RandomSearchAlgorithm(n_trials=5, seed=3),
        RandomSearchAlgorithm(5, 3),
        RandomSearchAlgorithm(5, seed=3),
    ]
    results = []
    for alg in forms:
        alg.start(space, MAX)
        assert alg.n_total == 5 and alg.seed == 3
        results.append([t.params for t in _drain(alg, 2)])
    assert all(r == results[0] for r in results)


def test_random_without_seed_records_one() -> None:
    alg = RandomSearchAlgorithm(_space(), n_trials=4)
    params = [t.params for t in _drain(alg)]
    again = RandomSearchAlgorithm(_space(), n_trials=4, seed=alg.seed)
    assert [t.params for t in _drain(again)] == params


@pytest.mark.parametrize(
    "kwargs",
    [{"n_trials": 0}, {"n_trials": None}, {"n_trials": 2.5}, {"n_trials": 3, "seed": -1}, {"n_trials": 3, "seed": "x"}],
)
def test_random_validation(kwargs: dict) -> None:
    with pytest.raises(SearchSpaceError):
        RandomSearchAlgorithm(_space(), **kwargs)


def test_random_without_space_errors_on_ask() -> None:
    with pytest.raises(SearchSpaceError, match="no parameter space"):
        RandomSearchAlgorithm(n_trials=3, seed=1).ask(1)


# -- tell and best --------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: GridSearchAlgorithm(_space()), lambda: RandomSearchAlgorithm(_space(), 12, 0)])
def test_tell_finished_and_best_maximize(make) -> None:
    alg = make()
    alg.start(None, MAX)
    trials = alg.ask(4)
    assert not alg.is_finished and alg.best_number is None
    alg.tell(0, [1.0], "complete")
    alg.tell(1, None, "failed")
    alg.tell(2, [float("nan")], "complete")  # NaN is never best
    alg.tell(3, [0.5], "complete")
    assert alg.best_number == 0 and alg.best_values == (1.0,)
    assert alg.n_told == 4
    rest = _drain(alg, 5)
    assert len(trials) + len(rest) == 12 and alg.is_finished  # finished once all asked, told or not
    alg.tell(11, [3.0], "complete")
    assert alg.best_number == 11


def test_best_minimize_and_failed_never_best() -> None:
    alg = GridSearchAlgorithm(_space())
    alg.start(None, MIN)
    alg.ask(3)
    alg.tell(0, None, "failed")
    assert alg.best_number is None
    alg.tell(1, [0.3], "complete")
    alg.tell(2, [0.1], "complete")
    assert alg.best_number == 2 and alg.best_values == (0.1,)


def test_failed_with_values_is_not_best() -> None:
    alg = RandomSearchAlgorithm(_space(), 3, 0)
    alg.start(None, MAX)
    alg.ask(2)
    alg.tell(0, [100.0], "failed")
    alg.tell(1, [1.0], "complete")
    assert alg.best_number == 1


def test_multi_objective_first_decides() -> None:
    alg = GridSearchAlgorithm(_space())
    alg.start(None, [("sharpe", "maximize"), ("drawdown", "minimize")])
    alg.ask(2)
    alg.tell(0, [1.0, 0.5], "complete")
    alg.tell(1, [2.0, 0.9], "complete")
    assert alg.best_number == 1 and alg.best_values == (2.0, 0.9)
    alg.ask(1)
    with pytest.raises(SearchSpaceError, match="objectives"):
        alg.tell(2, [1.0], "complete")


def test_tell_misuse() -> None:
    alg = GridSearchAlgorithm(_space())
    alg.start(None, MAX)
    alg.ask(2)
    with pytest.raises(SearchSpaceError, match="never|no such"):
        alg.tell(5, [1.0], "complete")
    with pytest.raises(SearchSpaceError, match="status"):
        alg.tell(0, [1.0], "done")
    with pytest.raises(SearchSpaceError, match="values"):
        alg.tell(0, None, "complete")
    alg.tell(0, [1.0], "complete")
    with pytest.raises(SearchSpaceError, match="already"):
        alg.tell(0, [2.0], "complete")
    with pytest.raises(SearchSpaceError, match="direction"):
        alg.start(None, [("sharpe", "up")])


def test_custom_algorithm_on_the_protocol() -> None:
    """A minimal subclass that waits for results: ask returns [] until the previous trial is told."""

    class OneAtATime(SearchAlgorithm):
        def __init__(self) -> None:
            self.waiting = False

        def ask(self, n: int = 1) -> list[TrialRequest]:
            if self.waiting or self.is_finished:
                return []
            self.waiting = True
            return [self._new_trial({"x": self.n_asked})]

        def tell(self, number: int, values, status: str) -> None:
            self._record(number, values, status)
            self.waiting = False

        @property
        def is_finished(self) -> bool:
            return self.n_told >= 3

    alg = OneAtATime()
    alg.start(None, MIN)
    assert alg.n_total is None and alg.objectives == (("drawdown", "minimize"),)
    numbers = []
    while not alg.is_finished:
        got = alg.ask(4)
        assert len(got) == 1 and alg.ask(4) == []
        numbers.append(got[0].number)
        alg.tell(got[0].number, [10.0 - got[0].number], "complete")
    assert numbers == [0, 1, 2] and alg.best_number == 2
