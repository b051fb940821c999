"""OptunaSearch driven by hand (ask/tell on a cheap analytic objective): real Optuna, real storages."""

from __future__ import annotations

import importlib.util
import time

import optuna
import pytest
from optuna.trial import TrialState

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.optuna_search import (
    NOT_RUN_ATTR,
    SAMPLER_NAMES,
    BayesianOptimizationAlgorithm,
    OptunaSearch,
    metric_constraints,
)
from rustybt_ray.optimize.space import (
    CategoricalParameter,
    ContinuousParameter,
    DiscreteParameter,
    ParameterSpace,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX = [("score", "maximize")]
# Optional packages Optuna needs for some samplers; without them the constructor says so.
OPTIONAL = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",), "qmc": ("scipy",)}


def xy_space(*constraints: str) -> ParameterSpace:
    return ParameterSpace([ContinuousParameter("x", -1.0, 1.0), ContinuousParameter("y", -1.0, 1.0)],
                          constraints=constraints)


def score(p: dict) -> float:
    """Negative quadratic, best (0) at x=0.3, y=-0.2."""
    return -((p["x"] - 0.3) ** 2 + (p["y"] + 0.2) ** 2)


def drive(algo: OptunaSearch, f=score, batch: int = 4, metrics=None, objectives=MAX) -> list[tuple[dict, float]]:
    """Run the search to the end, ``batch`` trials in flight at a time; returns (params, value) in tell order."""
    algo.start(None, objectives)
    out = []
    while not algo.is_finished:
        reqs = algo.ask(batch)
        assert reqs, "an unfinished search must hand out trials"
        for r in reqs:
            v = f(r.params)
            vals = list(v) if isinstance(v, tuple) else [v]
            algo.tell(r.number, vals, "complete", metrics(r.params) if metrics else {})
            out.append((r.params, v))
    return out


def missing(name: str) -> list[str]:
    return [m for m in OPTIONAL.get(name, ()) if importlib.util.find_spec(m) is None]


def best_of(sampler: str, n: int, **kw) -> float:
    algo = OptunaSearch(xy_space(), sampler=sampler, n_trials=n, seed=0, **kw)
    drive(algo)
    assert algo.n_told == n
    return algo.best_values[0]


# -- samplers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_each_sampler_finds_a_point_near_the_optimum(name):
    if missing(name):
        with pytest.raises(SearchSpaceError, match=f"needs the package.*{missing(name)[0]}"):
            OptunaSearch(xy_space(), sampler=name, n_trials=5)
        pytest.skip(f"sampler {name!r} needs {missing(name)}")
    n = 25 if name == "gp" else 60
    kw = {"sampler_kwargs": {"population_size": 10}} if name.startswith("nsga") else {}
    best = best_of(name, n, **kw)
    assert best > -0.05  # within ~0.22 of the optimum
    if name in ("tpe", "cmaes", "nsga2", "nsga3"):
        assert best > best_of("random", n)  # same seed, same budget
    if name == "tpe":
        assert best > -0.01


def test_tpe_defaults_and_alias():
    algo = BayesianOptimizationAlgorithm(xy_space(), n_trials=3, seed=1)
    assert isinstance(algo, OptunaSearch)
    assert isinstance(algo.sampler, optuna.samplers.TPESampler)
    assert algo.sampler._constant_liar and algo.sampler._multivariate
    from rustybt_ray.optimization import BayesianOptimizationAlgorithm as B, OptunaSearch as O
    assert B is O is OptunaSearch


def test_several_in_flight_never_share_params_on_a_discrete_space():
    space = ParameterSpace([DiscreteParameter("x", 0, 9), DiscreteParameter("y", 0, 9)])  # 100 points
    f = lambda p: -((p["x"] - 3) ** 2 + (p["y"] - 6) ** 2)  # noqa: E731
    for seed in (0, 1):
        algo = OptunaSearch(space, n_trials=80, seed=seed)
        algo.start(None, MAX)
        running = {r.number: r.params for r in algo.ask(8)}
        assert len(running) == 8
        while running:
            # Rolling: the 4 oldest finish, 4 new ones join the 4 still running.
            for number in sorted(running)[:4]:
                algo.tell(number, [f(running.pop(number))], "complete")
            for r in algo.ask(4):
                running[r.number] = r.params
            keys = [tuple(p.values()) for p in running.values()]
            assert len(keys) == len(set(keys)), f"seed {seed}: duplicate in flight {sorted(keys)}"
        assert algo.n_told == 80 and algo.best_values == (0,)
        # Turned-down repeats are Optuna trials too, marked and never counted.
        extra = [t for t in algo.study.trials if NOT_RUN_ATTR in t.user_attrs]
        assert len(extra) == algo.n_rejected and all(t.state == TrialState.FAIL for t in extra)


def test_discrete_float_values_are_the_spaces_own():
    space = ParameterSpace([DiscreteParameter("z", 0.1, 0.9, 0.1), CategoricalParameter("c", ("a", "b"))])
    algo = OptunaSearch(space, sampler="random", n_trials=30, seed=0)
    seen = drive(algo, f=lambda p: p["z"])
    values = set(space.get("z").values)
    assert all(p["z"] in values and p["c"] in ("a", "b") for p, _ in seen)


def test_same_seed_and_tells_give_the_same_trials():
    def run(sampler: str, seed: int) -> list[dict]:
        algo = OptunaSearch(xy_space(), sampler=sampler, n_trials=24, seed=seed)
        return [p for p, _ in drive(algo, batch=3)]

    for sampler in ("random", "tpe"):
        a = run(sampler, 7)
        assert a == run(sampler, 7)
        assert a != run(sampler, 8)


# -- multi-objective and constraints ------------------------------------------------------

def test_nsga2_multi_objective_gives_a_non_dominated_front():
    two = lambda p: (-(p["x"] ** 2 + p["y"] ** 2), -((p["x"] - 1) ** 2 + p["y"] ** 2))  # noqa: E731
    algo = OptunaSearch(xy_space(), sampler="nsga2", n_trials=100, seed=0, sampler_kwargs={"population_size": 10})
    told = drive(algo, f=two, objectives=[("a", "maximize"), ("b", "maximize")])
    front = algo.study.best_trials

    def dominates(u, v):
        return all(a >= b for a, b in zip(u, v)) and u != v

    assert len(front) >= 5
    for t in front:
        assert not any(dominates(tuple(o.values), tuple(t.values)) for o in front)
        assert not any(dominates(v, tuple(t.values)) for _, v in told)
    # The true front is y = 0, 0 <= x <= 1: the found one is close to it.
    assert sum(abs(t.params["y"]) < 0.3 and -0.2 < t.params["x"] < 1.2 for t in front) >= 0.8 * len(front)


def test_cmaes_refuses_several_objectives_and_a_pruner_needs_one():
    algo = OptunaSearch(xy_space(), sampler=optuna.samplers.CmaEsSampler(seed=0), n_trials=5)
    with pytest.raises(SearchSpaceError, match="CmaEsSampler handles one objective"):
        algo.start(None, [("a", "maximize"), ("b", "minimize")])
    algo = OptunaSearch(xy_space(), n_trials=5, pruner="median")
    with pytest.raises(SearchSpaceError, match="pruner needs a single objective"):
        algo.start(None, [("a", "maximize"), ("b", "minimize")])


def test_metric_constraints_turn_rules_into_values_feasible_at_or_below_zero():
    fn = metric_constraints([("n_trades", ">=", 20), ("max_drawdown", ">", -0.3), ("turnover", "<", 5)])
    c = fn({"n_trades": 25, "max_drawdown": -0.3, "turnover": 4})
    assert c["n_trades>=20"] == -5 and c["max_drawdown>-0.3"] > 0 and c["turnover<5"] < 0
    assert fn({"max_drawdown": float("nan")}) == {"n_trades>=20": 1.0, "max_drawdown>-0.3": 1.0, "turnover<5": 1.0}
    as_callable = metric_constraints(lambda m: [20 - m["n_trades"], float("nan")])
    assert as_callable({"n_trades": 30}) == {"0": -10.0, "1": 1.0}


def test_constraints_steer_tpe_towards_feasible_points():
    # n_trades grows with x; the unconstrained optimum (x=-0.5) has too few trades.
    trades = lambda p: {"n_trades": 20 * (p["x"] + 1)}  # noqa: E731  feasible when x >= 0
    f = lambda p: -((p["x"] + 0.5) ** 2 + p["y"] ** 2)  # noqa: E731
    algo = OptunaSearch(xy_space(), n_trials=60, seed=0, constraints=[("n_trades", ">=", 20)])
    told = drive(algo, f=f, metrics=trades, batch=2)
    feasible = [p["x"] >= 0 for p, _ in told]
    assert sum(feasible[30:]) > sum(feasible[:30])
    complete = algo.study.get_trials(states=(TrialState.COMPLETE,))
    assert all(set(t.constraints) == {"n_trades>=20"} for t in complete)  # Optuna's own convention
    best = max((t for t in complete if all(v <= 0 for v in t.constraints.values())), key=lambda t: t.value)
    assert 0 <= best.params["x"] < 0.2  # the constrained optimum is x = 0


def test_complete_trials_need_metrics_when_constrained():
    algo = OptunaSearch(xy_space(), n_trials=3, constraints=lambda m: [1 - m["n"]])
    algo.start(None, MAX)
    (r,) = algo.ask(1)
    with pytest.raises(SearchSpaceError, match="pass metrics="):
        algo.tell(r.number, [1.0], "complete")
    algo.tell(r.number, [1.0], "complete", {"n": 3})
    assert algo.study.trials[0].constraints == {"0": -2.0}


def test_space_constraints_are_never_broken_and_rejections_do_not_count():
    space = ParameterSpace([DiscreteParameter("fast", 1, 20), DiscreteParameter("slow", 1, 20)],
                           constraints=["fast + 12 < slow"])  # 28 of 400 points
    for sampler in ("tpe", "random"):
        algo = OptunaSearch(space, sampler=sampler, n_trials=25, seed=0)
        told = drive(algo, f=lambda p: p["slow"] - p["fast"])
        assert len(told) == 25 and all(p["fast"] + 12 < p["slow"] for p, _ in told)
        assert algo.n_rejected > 0
        study = algo.study
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 25
        rejected = [t for t in study.trials if t.user_attrs.get(NOT_RUN_ATTR, "").startswith("violates")]
        assert rejected and all(t.state == TrialState.PRUNED for t in rejected)


# -- tell statuses and pruning ------------------------------------------------------------

def test_failed_pruned_and_nan_trials_reach_the_study():
    algo = OptunaSearch(xy_space(), n_trials=4, seed=0)
    algo.start(None, MAX)
    a, b, c, d = algo.ask(4)
    algo.tell(a.number, [float("nan")], "complete")
    algo.tell(b.number, None, "failed")
    algo.tell(c.number, [0.5], "pruned")
    algo.tell(d.number, [-1.0], "complete")
    states = [t.state for t in algo.study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE]
    assert algo.study.trials[0].user_attrs["rustybt_ray_nan_values"] is True
    assert algo.study.trials[2].value == 0.5  # kept as its intermediate value
    assert algo.n_told == 4 and algo.best_number == d.number
    with pytest.raises(SearchSpaceError, match="already told"):
        algo.tell(d.number, [1.0], "complete")


def test_report_prunes_trials_clearly_worse_than_finished_ones():
    algo = OptunaSearch(xy_space(), n_trials=10, seed=0,
                        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    algo.start(None, MAX)
    for r in algo.ask(3):
        for step in range(3):
            assert algo.report(r.number, step, 1.0 + step) is False  # nothing to compare with yet
        algo.tell(r.number, [3.0], "complete")
    bad, good = algo.ask(2)
    assert algo.report(bad.number, 1, -5.0) is True
    assert algo.report(good.number, 1, 4.0) is False
    assert algo.report(good.number, 2, float("nan")) is False  # no evidence, not stored
    algo.tell(bad.number, [-5.0], "pruned")
    assert algo.study.trials[3].state == TrialState.PRUNED and algo.study.trials[3].intermediate_values == {1: -5.0}
    with pytest.raises(SearchSpaceError, match="not running"):
        algo.report(bad.number, 2, 0.0)
    # Without a pruner a report only records the value.
    plain = OptunaSearch(xy_space(), n_trials=8, seed=0)
    plain.start(None, MAX)
    for r in plain.ask(6):
        plain.report(r.number, 1, 3.0)
        plain.tell(r.number, [3.0], "complete")
    (r,) = plain.ask(1)
    assert plain.pruner is None and plain.report(r.number, 1, -100.0) is False
    two = OptunaSearch(xy_space(), n_trials=2, seed=0)
    two.start(None, [("a", "maximize"), ("b", "maximize")])
    (r,) = two.ask(1)
    with pytest.raises(SearchSpaceError, match="single objective"):
        two.report(r.number, 0, 1.0)


def test_timeout_stops_asking():
    algo = OptunaSearch(xy_space(), timeout=0.3, sampler="random", seed=0)
    algo.start(None, MAX)
    assert algo.n_total is None and not algo.is_finished
    assert len(algo.ask(3)) == 3
    time.sleep(0.35)
    assert algo.is_finished and algo.ask(3) == []


# -- enqueue ------------------------------------------------------------------------------

def test_enqueued_points_run_first_and_are_checked():
    algo = OptunaSearch(xy_space(), n_trials=6, seed=0, enqueue=[{"x": 0.5, "y": -0.5}, {"x": 0.1}])
    algo.start(None, MAX)
    first, second, *_ = algo.ask(4)
    assert first.params == {"x": 0.5, "y": -0.5} and second.params["x"] == 0.1
    for bad, problem in [({"z": 1}, "unknown parameter 'z'"), ({"x": 2.0}, "x=2.0 is outside"),
                         ({"x": 0.5, "y": 0.6}, "breaks the space's constraints")]:
        with pytest.raises(SearchSpaceError, match=problem):
            OptunaSearch(xy_space("x > y"), n_trials=3, enqueue=[bad])
    cat = ParameterSpace([CategoricalParameter("c", ("a", "b")), DiscreteParameter("n", 0, 10, 2)])
    for bad in ({"c": "z"}, {"n": 3}):
        with pytest.raises(SearchSpaceError, match="outside the space"):
            OptunaSearch(cat, n_trials=3, enqueue=[bad])


# -- storage and resume -------------------------------------------------------------------

def crash_after(storage, name: str, n_asked: int, n_told: int) -> list[dict]:
    """A driver that asked ``n_asked``, told ``n_told`` and died; returns the params it left running."""
    algo = OptunaSearch(xy_space(), n_trials=n_asked, seed=0, storage=storage, study_name=name)
    algo.start(None, MAX)
    reqs = algo.ask(n_asked)
    for r in reqs[:n_told]:
        algo.tell(r.number, [score(r.params)], "complete")
    return [r.params for r in reqs[n_told:]]


def test_resume_fails_stale_trials_reruns_them_first_and_counts_finished_ones(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    stale = crash_after(url, "sma", n_asked=12, n_told=10)
    assert len(stale) == 2
    algo = OptunaSearch(xy_space(), n_trials=15, seed=0, storage=url, study_name="sma")
    algo.start(None, MAX)
    # 10 finished trials count; the 2 stale ones never ran, so they do not: 5 to go.
    assert (algo.n_stale, algo.n_done_before, algo.n_total) == (2, 10, 5)
    reqs = algo.ask(10)
    assert len(reqs) == 5 and algo.is_finished and algo.ask(1) == []
    assert [r.params for r in reqs[:2]] == stale  # rerun first, in their order
    for r in reqs:
        algo.tell(r.number, [score(r.params)], "complete")
    trials = optuna.load_study(study_name="sma", storage=url).trials
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 15
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [10, 11] and all(NOT_RUN_ATTR in t.user_attrs for t in failed)
    assert [t.user_attrs.get("rustybt_ray_rerun_of") for t in trials[12:14]] == [10, 11]
    # Re-running the finished study runs nothing.
    again = OptunaSearch(xy_space(), n_trials=15, seed=0, storage=url, study_name="sma")
    again.start(None, MAX)
    assert again.n_total == 0 and again.is_finished and again.ask(4) == []
    assert again.study.best_value == max(t.value for t in trials if t.value is not None)


@pytest.mark.parametrize("kind", ["path", "instance"])
def test_journal_storage_resumes_too(tmp_path, kind):
    path = tmp_path / "study.log"
    if kind == "path":
        storage = str(path)
    else:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    stale = crash_after(storage, "j", n_asked=6, n_told=5)
    algo = OptunaSearch(xy_space(), n_trials=8, seed=0, storage=storage, study_name="j")
    algo.start(None, MAX)
    assert (algo.n_stale, algo.n_done_before, algo.n_total) == (1, 5, 3)
    reqs = algo.ask(8)
    assert len(reqs) == 3 and reqs[0].params == stale[0]
    assert path.exists()


def test_enqueued_points_are_not_rerun_when_resuming(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    first = OptunaSearch(xy_space(), n_trials=3, seed=0, storage=url, study_name="e", enqueue=[{"x": 0.0, "y": 0.0}])
    drive(first)
    more = OptunaSearch(xy_space(), n_trials=5, seed=0, storage=url, study_name="e", enqueue=[{"x": 0.0, "y": 0.0}])
    told = drive(more)
    assert len(told) == 2 and {"x": 0.0, "y": 0.0} not in [p for p, _ in told]


# -- errors -------------------------------------------------------------------------------

def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SearchSpaceError, match=r"unknown sampler 'annealing'; use one of tpe, gp, cmaes, qmc"):
        OptunaSearch(xy_space(), sampler="annealing", n_trials=5)
    with pytest.raises(SearchSpaceError, match="storage needs a study_name"):
        OptunaSearch(xy_space(), n_trials=5, storage=f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(SearchSpaceError, match="needs n_trials or timeout"):
        OptunaSearch(xy_space())
    with pytest.raises(SearchSpaceError, match="storage 'x.db'.*sqlite:///"):
        OptunaSearch(xy_space(), n_trials=5, storage="x.db", study_name="a")
    with pytest.raises(SearchSpaceError, match="bad constraint .*'n_trades', '=>', 20"):
        OptunaSearch(xy_space(), n_trials=5, constraints=[("n_trades", "=>", 20)])
    with pytest.raises(SearchSpaceError, match="constraints: give a callable or a list"):
        OptunaSearch(xy_space(), n_trials=5, constraints="n_trades >= 20")
    with pytest.raises(SearchSpaceError, match="sampler 'random' ignores constraints"):
        OptunaSearch(xy_space(), sampler="random", n_trials=5, constraints=[("n_trades", ">=", 20)])
    with pytest.raises(SearchSpaceError, match="RandomSampler ignores constraints"):
        OptunaSearch(xy_space(), sampler=optuna.samplers.RandomSampler(), n_trials=5, constraints=lambda m: [0.0])
    with pytest.raises(SearchSpaceError, match="sampler_kwargs only apply"):
        OptunaSearch(xy_space(), sampler=optuna.samplers.RandomSampler(), n_trials=5, sampler_kwargs={"seed": 1})
    with pytest.raises(SearchSpaceError, match="sampler 'tpe':.*bogus"):
        OptunaSearch(xy_space(), n_trials=5, sampler_kwargs={"bogus": 1})
    with pytest.raises(SearchSpaceError, match="unknown pruner 'sometimes'"):
        OptunaSearch(xy_space(), n_trials=5, pruner="sometimes")
    with pytest.raises(SearchSpaceError, match="has no parameter space"):
        OptunaSearch(n_trials=5).start(None, MAX)
    with pytest.raises(SearchSpaceError, match="exists once the search started"):
        OptunaSearch(xy_space(), n_trials=5).study  # noqa: B018
    url = f"sqlite:///{tmp_path / 'd.db'}"
    OptunaSearch(xy_space(), n_trials=5, storage=url, study_name="d").start(None, MAX)
    with pytest.raises(SearchSpaceError, match=r"study 'd' has directions \['maximize'\].*need \['minimize'\]"):
        OptunaSearch(xy_space(), n_trials=5, storage=url, study_name="d").start(None, [("dd", "minimize")])
    with pytest.raises(SearchSpaceError, match="directions"):
        OptunaSearch(xy_space(), n_trials=5, storage=url, study_name="d").start(
            None, [("a", "maximize"), ("b", "maximize")])


def test_space_from_start_and_numbers_count_from_zero():
    algo = OptunaSearch(n_trials=3, seed=0, sampler="random")
    algo.start(xy_space(), MAX)
    assert [r.number for r in algo.ask(5)] == [0, 1, 2]
    assert algo.n_total == 3 and algo.is_finished and len(algo.study.trials) == 3


def test_a_constraints_function_that_raises_makes_the_trial_infeasible_not_the_sweep_fail():
    from rustybt_ray.optimize.optuna_search import metric_constraints

    def fragile(m):
        if m["n_trades"] < 5:
            raise KeyError("needs n_trades >= 5")
        return [20 - m["n_trades"]]

    fn = metric_constraints(fragile)
    assert fn({"n_trades": 30}) == {"0": -10.0}
    with pytest.warns(RuntimeWarning, match="constraints function raised"):
        bad = fn({"n_trades": 1})
    assert bad == {"constraints_error": 1.0}  # > 0: infeasible
