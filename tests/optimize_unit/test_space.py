"""ParameterSpace and its parameters: values, validation, constraints, grid, sampling, Optuna."""

from __future__ import annotations

import math

import numpy as np
import optuna.distributions as od
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybt_ray.engine import TradingAlgorithm
from rustybt_ray.errors import RustyBTError, SearchSpaceError
from rustybt_ray.optimize.space import (
    CategoricalParameter,
    ContinuousParameter,
    DiscreteParameter,
    ParameterSpace,
)

# -- parameter values -----------------------------------------------------------------


def test_discrete_int_values() -> None:
    p = DiscreteParameter("lookback", 10, 100, step=10)
    assert p.values == (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    assert all(type(v) is int for v in p.values)
    assert len(p) == 10


def test_discrete_step_not_dividing_range_stops_below_max() -> None:
    assert DiscreteParameter("x", 1, 10, step=4).values == (1, 5, 9)
    assert DiscreteParameter("x", 0, 1.0, step=0.3).values == (0.0, 0.3, 0.6, 0.9)


def test_discrete_float_values_have_no_drift() -> None:
    assert DiscreteParameter("x", 0.1, 0.3, step=0.1).values == (0.1, 0.2, 0.3)
    vals = DiscreteParameter("x", 0.0, 1.0, step=0.1).values
    assert vals == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert all(type(v) is float for v in vals)


def test_discrete_single_value_and_negative_range() -> None:
    assert DiscreteParameter("x", 5, 5).values == (5,)
    assert DiscreteParameter("x", -3, -0.5).values == (-3, -2, -1)


def test_categorical_values_keep_order() -> None:
    p = CategoricalParameter("mode", ["b", "a", 3])
    assert p.values == ("b", "a", 3)
    assert len(p) == 3


def test_continuous_grid_linear_and_log() -> None:
    assert ContinuousParameter("t", 0.0, 1.0).grid_values(5) == (0.0, 0.25, 0.5, 0.75, 1.0)
    g = ContinuousParameter("t", 0.001, 0.1, log=True).grid_values(3)
    assert g == (0.001, 0.01, 0.1)
    assert ContinuousParameter("t", 2.0, 2.0).grid_values(1) == (2.0,)
    assert ContinuousParameter("t", 2.0, 2.0).grid_values(4) == (2.0,)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DiscreteParameter("x", 10, 1),
        lambda: DiscreteParameter("x", 1, 10, step=0),
        lambda: DiscreteParameter("x", 1, 10, step=-1),
        lambda: DiscreteParameter("x", 1, float("inf")),
        lambda: DiscreteParameter("x", True, 10),
        lambda: DiscreteParameter("x", "1", 10),
        lambda: ContinuousParameter("x", 1.0, 0.5),
        lambda: ContinuousParameter("x", 0.0, 1.0, log=True),
        lambda: ContinuousParameter("x", -1.0, 1.0, log=True),
        lambda: ContinuousParameter("x", float("nan"), 1.0),
        lambda: CategoricalParameter("x", []),
        lambda: CategoricalParameter("x", ["a", "b", "a"]),
        lambda: CategoricalParameter("x", "abc"),
        lambda: DiscreteParameter("2fast", 1, 2),
        lambda: DiscreteParameter("fast-ma", 1, 2),
        lambda: DiscreteParameter("", 1, 2),
        lambda: DiscreteParameter("class", 1, 2),
        lambda: DiscreteParameter("_private", 1, 2),
        lambda: DiscreteParameter("status", 1, 2),
        lambda: ParameterSpace([]),
        lambda: ParameterSpace([DiscreteParameter("a", 1, 2), CategoricalParameter("a", [1])]),
    ],
)
def test_validation_errors(make) -> None:
    with pytest.raises(SearchSpaceError) as info:
        make()
    assert isinstance(info.value, RustyBTError)


def test_categorical_true_and_one_are_distinct_choices() -> None:
    assert CategoricalParameter("x", [1, True]).values == (1, True)


def test_grid_point_count_validation() -> None:
    with pytest.raises(SearchSpaceError, match="both ends"):
        ContinuousParameter("t", 0.0, 1.0).grid_values(1)
    with pytest.raises(SearchSpaceError):
        ContinuousParameter("t", 0.0, 1.0).grid_values(0)


# -- the space ------------------------------------------------------------------------


def _space(*constraints) -> ParameterSpace:
    return ParameterSpace(
        [DiscreteParameter("fast", 5, 20, step=5), DiscreteParameter("slow", 10, 30, step=10)],
        constraints=list(constraints),
    )


def test_container_protocol() -> None:
    s = _space()
    assert s.names == ["fast", "slow"]
    assert len(s) == 2
    assert [p.name for p in s] == ["fast", "slow"]
    assert s.get("slow").values == (10, 20, 30)
    with pytest.raises(SearchSpaceError, match="fast, slow"):
        s.get("nope")
    assert "ParameterSpace" in repr(s)


def test_grid_order_and_size() -> None:
    s = _space()
    grid = list(s.grid())
    assert s.grid_size() == len(grid) == 12
    assert grid[:4] == [
        {"fast": 5, "slow": 10},
        {"fast": 5, "slow": 20},
        {"fast": 5, "slow": 30},
        {"fast": 10, "slow": 10},
    ]


def test_grid_with_continuous_points() -> None:
    s = ParameterSpace([CategoricalParameter("m", ["a", "b"]), ContinuousParameter("t", 1.0, 100.0, log=True)])
    assert list(s.grid({"t": 3})) == [
        {"m": "a", "t": 1.0}, {"m": "a", "t": 10.0}, {"m": "a", "t": 100.0},
        {"m": "b", "t": 1.0}, {"m": "b", "t": 10.0}, {"m": "b", "t": 100.0},
    ]
    assert s.grid_size(4) == 8


def test_grid_without_points_for_continuous_says_how() -> None:
    s = ParameterSpace([ContinuousParameter("threshold", 0.0, 1.0)])
    with pytest.raises(SearchSpaceError, match=r"points=\{'threshold': 5\}"):
        list(s.grid())
    with pytest.raises(SearchSpaceError, match="threshold"):
        s.grid_size({})


def test_grid_points_for_unknown_or_discrete_name() -> None:
    s = _space()
    with pytest.raises(SearchSpaceError, match="nope"):
        s.grid_size({"nope": 3})
    with pytest.raises(SearchSpaceError, match="only continuous"):
        s.grid_size({"fast": 3})


@pytest.mark.parametrize("constraint", ["fast < slow", lambda p: p["fast"] < p["slow"]])
def test_constraints_filter_grid(constraint) -> None:
    s = _space(constraint)
    grid = list(s.grid())
    assert grid == [p for p in _space().grid() if p["fast"] < p["slow"]]
    assert len(grid) == 8
    assert s.grid_size() == 12  # the size is before constraints
    assert s.satisfies({"fast": 5, "slow": 10}) and not s.satisfies({"fast": 10, "slow": 10})


@pytest.mark.parametrize(
    ("expr", "params", "expected"),
    [
        ("fast * 2 <= slow", {"fast": 5, "slow": 10}, True),
        ("fast * 2 <= slow", {"fast": 6, "slow": 10}, False),
        ("slow - fast >= 5 and fast % 5 == 0", {"fast": 5, "slow": 10}, True),
        ("not fast > slow", {"fast": 5, "slow": 10}, True),
        ("5 <= fast < slow", {"fast": 5, "slow": 6}, True),
        ("5 < fast < slow", {"fast": 5, "slow": 6}, False),
        ("-fast + slow ** 2 / 4 // 1 != 0", {"fast": 5, "slow": 10}, True),
        ("fast < 10 or slow > 25", {"fast": 15, "slow": 30}, True),
    ],
)
def test_string_constraint_evaluation(expr: str, params: dict, expected: bool) -> None:
    assert _space(expr).satisfies(params) is expected


def test_string_constraint_on_categorical() -> None:
    s = ParameterSpace([CategoricalParameter("m", ["a", "b"]), DiscreteParameter("n", 1, 3)], ["m == 'a' or n > 2"])
    assert list(s.grid()) == [{"m": "a", "n": 1}, {"m": "a", "n": 2}, {"m": "a", "n": 3}, {"m": "b", "n": 3}]


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('x')",
        "fast.__class__ < slow",
        "open('f') == 1",
        "[fast][0] < slow",
        "(lambda: 1)() < slow",
        "fast if slow else 1",
        "fast < unknown_name",
        "fast in (1, 2)",
        "fast | slow",
        "fast < slow; import os",
        "fast <",
        "",
        "(fast := 3) < slow",
        "f'{fast}' == '5'",
    ],
)
def test_malicious_or_malformed_string_constraint_rejected(expr: str) -> None:
    with pytest.raises(SearchSpaceError):
        _space(expr)


def test_constraint_errors_at_evaluation_are_clear() -> None:
    s = _space("slow / (fast - 5) > 1")
    with pytest.raises(SearchSpaceError, match="ZeroDivisionError"):
        s.satisfies({"fast": 5, "slow": 10})
    s = _space("fast ** slow > 1")  # a huge power would hang a sweep
    with pytest.raises(SearchSpaceError, match="exponent"):
        s.satisfies({"fast": 5, "slow": 100})
    with pytest.raises(SearchSpaceError):
        _space(42)  # neither string nor callable


@pytest.mark.parametrize(
    "expr",
    [
        "(((9**64)**64)**64)**64 > fast",  # nesting defeats a cap on one exponent
        "'x' * 10**9 == 'y'",  # ~1 GB string
        "10**9 * 'x' == 'y'",
        "(3**40)**20 > slow",
    ],
)
def test_constant_parts_that_would_hang_or_exhaust_memory_are_refused_at_construction(expr: str) -> None:
    with pytest.raises(SearchSpaceError, match="bits|characters"):
        _space(expr)


@pytest.mark.parametrize(
    "expr, match",
    [
        ("(((fast**64)**64)**64)**64 > slow", "bits"),
        ("slow**60 * slow**60 * slow**60 * slow**60 * slow**60 * slow**60 > 1", "bits"),
        ("'x' * (10**9 + fast) == 'y'", "characters"),
        ("'%0999999999d' % fast == 'a'", "formatting"),
    ],
)
def test_intermediate_values_are_bounded_at_evaluation(expr: str, match: str) -> None:
    s = _space(expr)
    with pytest.raises(SearchSpaceError, match=match):
        s.satisfies({"fast": 5, "slow": 10})
    with pytest.raises(SearchSpaceError, match=match):
        list(s.grid())


def test_ordinary_constraints_still_work_within_the_bounds() -> None:
    s = _space("fast * 2 <= slow", "fast ** 2 < slow * 30", "2 ** 60 > fast", "'ab' * 3 == 'ababab'", "-fast < 0")
    assert [(p["fast"], p["slow"]) for p in s.grid()] == [(5, 10), (5, 20), (5, 30), (10, 20), (10, 30), (15, 30)]
    assert _space("2 ** 64 * 2 ** 64 > fast").satisfies({"fast": 5, "slow": 10})  # 129 bits is fine
    assert _space("fast ** -2 < 1").satisfies({"fast": 5, "slow": 10})


def test_a_constraint_nested_too_deeply_is_a_clear_error() -> None:
    with pytest.raises(SearchSpaceError):
        _space("+".join(["1"] * 100_000) + " > fast")


def test_sample_respects_bounds_kinds_and_constraints() -> None:
    s = ParameterSpace(
        [
            DiscreteParameter("fast", 5, 50, step=5),
            DiscreteParameter("slow", 10, 200, step=10),
            ContinuousParameter("t", 0.001, 0.1, log=True),
            ContinuousParameter("u", -1.0, 1.0),
            CategoricalParameter("m", ["a", "b", "c"]),
        ],
        ["fast < slow"],
    )
    rng = np.random.default_rng(0)
    samples = [s.sample(rng) for _ in range(500)]
    for p in samples:
        assert p["fast"] in s.get("fast").values and p["slow"] in s.get("slow").values
        assert p["fast"] < p["slow"]
        assert 0.001 <= p["t"] <= 0.1 and -1.0 <= p["u"] <= 1.0
        assert p["m"] in ("a", "b", "c")
    # log-uniform: about a half of the draws below the geometric midpoint 0.01
    below = sum(p["t"] < 0.01 for p in samples) / len(samples)
    assert 0.4 < below < 0.6
    assert {p["m"] for p in samples} == {"a", "b", "c"}


def test_sample_impossible_constraint_errors() -> None:
    s = _space("fast > slow + 100")
    with pytest.raises(SearchSpaceError, match="10 tries"):
        s.sample(np.random.default_rng(0), max_tries=10)


@settings(max_examples=50, deadline=None)
@given(
    lo=st.floats(-1e6, 1e6),
    width=st.floats(0, 1e6),
    seed=st.integers(0, 2**32),
    log=st.booleans(),
)
def test_continuous_sample_in_bounds_and_reproducible(lo: float, width: float, seed: int, log: bool) -> None:
    if log:
        lo = abs(lo) + 1e-3
    p = ContinuousParameter("x", lo, lo + width, log=log)
    s = ParameterSpace([p, DiscreteParameter("n", 0, 7)])
    a = s.sample(np.random.default_rng(seed))
    assert a == s.sample(np.random.default_rng(seed))
    assert p.min_value <= a["x"] <= p.max_value
    assert 0 <= a["n"] <= 7


@settings(max_examples=50, deadline=None)
@given(
    lo=st.integers(-1000, 1000),
    n=st.integers(1, 200),
    step=st.sampled_from([0.1, 0.25, 0.3, 0.01, 1.5, 7]),
)
def test_discrete_values_on_grid_and_within_bounds(lo: int, n: int, step: float) -> None:
    hi = lo + n * step * 0.999 + 1e-9
    p = DiscreteParameter("x", lo, hi, step=step)
    vals = p.values
    assert vals[0] == lo and vals[-1] <= hi
    assert all(b > a for a, b in zip(vals, vals[1:]))
    assert all(math.isclose(v, lo + i * step, rel_tol=1e-9, abs_tol=1e-9) for i, v in enumerate(vals))
    assert vals[-1] + step > hi  # no value left out


def test_unconfirmed_names() -> None:
    class Strat(TradingAlgorithm):
        fast = 10
        slow = 50

        def initialize(self) -> None:
            self.lookback = 20

    s = ParameterSpace([DiscreteParameter("fast", 1, 2), DiscreteParameter("lookback", 1, 2)])
    assert s.unconfirmed_names(Strat) == ["lookback"]
    assert _space().unconfirmed_names(Strat) == []
    with pytest.raises(SearchSpaceError, match="parameters"):
        s.unconfirmed_names(object)


def test_optuna_distributions_map_exactly() -> None:
    s = ParameterSpace(
        [
            DiscreteParameter("lookback", 10, 95, step=10),
            DiscreteParameter("x", 0.1, 0.35, step=0.1),
            ContinuousParameter("t", 0.001, 0.1, log=True),
            ContinuousParameter("u", -1.0, 1.0),
            CategoricalParameter("m", ["a", "b", 3]),
        ]
    )
    d = s.to_optuna_distributions()
    assert list(d) == s.names
    assert d["lookback"] == od.IntDistribution(10, 90, step=10)
    assert d["x"] == od.FloatDistribution(0.1, 0.3, step=0.1)
    assert d["t"] == od.FloatDistribution(0.001, 0.1, log=True)
    assert d["u"] == od.FloatDistribution(-1.0, 1.0)
    assert d["m"] == od.CategoricalDistribution(["a", "b", 3])
    # the same values: every discrete value is in the Optuna distribution and vice versa
    lb = d["lookback"]
    assert list(range(lb.low, lb.high + 1, lb.step)) == list(s.get("lookback").values)
    for v in s.get("x").values:
        assert d["x"]._contains(d["x"].to_internal_repr(v))
