"""Sweep checks that need no worker fail before Ray starts (issue 9, defect 2), in a fresh process each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Each case runs in one fresh process: the call must raise a RustyBTError and leave Ray unstarted.
SCRIPT = textwrap.dedent("""
    import json, math, sys
    import ray
    from rustybt_ray.errors import RustyBTError
    from rustybt_ray.examples.sma_crossover import SmaCrossover
    from rustybt_ray.optimize import (DiscreteParameter, GridSearchAlgorithm, ParallelOptimizer, ParameterSpace,
                                      WalkForwardOptimizer, WindowConfig)

    case, kind = sys.argv[1], sys.argv[2]
    names = {"unknown_param": ["fast", "slowww"], "param_is_metric": ["fast", "exposure"]}.get(case, ["fast", "slow"])
    space = ParameterSpace([DiscreteParameter(names[0], 5, 10, 5), DiscreteParameter(names[1], 30, 60, 30)])
    args = {"bundle": "demo", "start": "2016-01-01", "end": "2018-12-31", "capital_base": 100_000.0,
            "objective": "sharpe"}
    args.update({
        "start_after_end": {"start": "2018-12-31", "end": "2016-01-01"},
        "capital_zero": {"capital_base": 0.0},
        "capital_nan": {"capital_base": math.nan},
        "capital_string": {"capital_base": "abc"},
        "objective_no_metric": {"objective": "sharp"},
        "unknown_param": {},
        "param_is_metric": {},
        "unknown_bundle": {"bundle": "no_such_bundle_xyz"},
    }[case])
    try:
        if kind == "search":
            ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=1, progress=False).run(
                SmaCrossover, args["bundle"], args["start"], args["end"], args["objective"],
                capital_base=args["capital_base"])
        else:
            WalkForwardOptimizer(space, WindowConfig(252, 0, 63, 126), objective=args["objective"], n_jobs=1,
                                 progress=False).run(SmaCrossover, args["bundle"], args["start"], args["end"],
                                                     capital_base=args["capital_base"])
        outcome = "no error"
    except RustyBTError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        outcome = f"UNTYPED {type(exc).__name__}: {exc}"
    print(json.dumps({"outcome": outcome, "ray_started": ray.is_initialized()}))
""")

CASES = {
    "start_after_end": "after end",
    "capital_zero": "capital_base",
    "capital_nan": "capital_base",
    "capital_string": "capital_base",
    "objective_no_metric": "unknown objective",
    "unknown_param": "slowww",
    "param_is_metric": "'exposure' is also a metric",
    "unknown_bundle": "no_such_bundle_xyz",
}


def _run_case(case: str, kind: str) -> dict:
    # A reply from a fresh process: no earlier Ray of this test session can hide a start.
    env = dict(os.environ, RAY_ADDRESS="local")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, case, kind], capture_output=True, text=True, timeout=180,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["search", "walk_forward"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sweep_arguments_fail_typed_before_ray_starts(case, kind):
    got = _run_case(case, kind)
    assert not got["outcome"].startswith(("UNTYPED", "no error")), got
    assert CASES[case] in got["outcome"], got
    assert got["ray_started"] is False, got


def test_validate_returns_the_loaded_bundle_and_needs_no_ray(tmp_path):
    import ray

    from rustybt_ray.examples.sma_crossover import SmaCrossover
    from rustybt_ray.optimize import DiscreteParameter, OptunaSearch, ParallelOptimizer, ParameterSpace

    # Another test module of this session may have started Ray already: then validate must not stop it either.
    ray_before = ray.is_initialized()
    space = ParameterSpace([DiscreteParameter("fast", 5, 10, 5), DiscreteParameter("slow", 30, 60, 30)])
    algo = OptunaSearch(space, n_trials=3, storage=str(tmp_path / "study.log"), study_name="s")
    pre = ParallelOptimizer(algo, progress=False).validate(SmaCrossover, "demo", "2016-01-01", "2017-12-31",
                                                           journal=tmp_path / "j.jsonl")
    assert pre.bundle.name == "demo" and pre.i1 > pre.i0 and pre.objectives.names == ["sharpe"]
    assert list(tmp_path.iterdir()) == []  # neither the study nor the journal was created
    assert ray.is_initialized() == ray_before


def test_validate_checks_the_algorithm_can_search_the_objectives():
    from rustybt_ray.errors import SearchSpaceError
    from rustybt_ray.examples.sma_crossover import SmaCrossover
    from rustybt_ray.optimize import DiscreteParameter, OptunaSearch, ParallelOptimizer, ParameterSpace

    space = ParameterSpace([DiscreteParameter("fast", 5, 10, 5)])
    opt = ParallelOptimizer(OptunaSearch(space, sampler="cmaes", n_trials=3), progress=False)
    with pytest.raises(SearchSpaceError, match="one objective"):
        opt.validate(SmaCrossover, "demo", "2016-01-01", "2017-12-31", ["sharpe", "max_drawdown"])


def test_run_algorithm_with_a_string_capital_is_a_typed_error():
    from rustybt_ray import run_algorithm
    from rustybt_ray.errors import RustyBTError
    from rustybt_ray.examples.sma_crossover import SmaCrossover

    with pytest.raises(RustyBTError, match="capital_base"):
        run_algorithm(SmaCrossover, "demo", "2016-01-01", "2016-03-01", capital_base="abc")  # type: ignore[arg-type]
