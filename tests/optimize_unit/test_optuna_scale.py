"""Bounded-cost samplers (history window, sampler switch) and shared-study bookkeeping, on real Optuna studies."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.optuna_scale import (
    DRIVER_ATTR,
    SwitchingSampler,
    WindowedSampler,
    driver_id,
    is_stale,
)
from rustybt_ray.optimize.optuna_search import NOT_RUN_ATTR, NUMBER_ATTR, OptunaSearch
from rustybt_ray.optimize.space import DiscreteParameter, ParameterSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
D = {"fast": IntDistribution(2, 100), "slow": IntDistribution(5, 400)}
MAX = [("score", "maximize")]


class Recording(optuna.samplers.RandomSampler):
    """A real RandomSampler that records, per trial number, the trial numbers the study showed it."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.seen: dict[int, list[int]] = {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        self.seen[trial.number] = [t.number for t in study._get_trials(deepcopy=False)]
        return super().sample_independent(study, trial, param_name, param_distribution)


def sma_space() -> ParameterSpace:
    return ParameterSpace([DiscreteParameter("fast", 2, 100), DiscreteParameter("slow", 5, 400)],
                          constraints=["fast < slow"])


def score(p: dict) -> float:
    return -((p["fast"] - 20) ** 2) / 100 - ((p["slow"] - 120) ** 2) / 1e4


def drive(algo: OptunaSearch, batch: int = 3) -> list[dict]:
    algo.start(None, MAX)
    asked = []
    while not algo.is_finished:
        reqs = algo.ask(batch)
        for r in reqs:
            algo.tell(r.number, [score(r.params)], "complete", {})
            asked.append(r.params)
    return asked


# -- the window -------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=st.integers(1, 8), top=st.integers(0, 5),
       plan=st.lists(st.tuples(st.sampled_from(["complete", "pruned", "fail", "hold"]),
                               st.integers(-50, 50)), min_size=1, max_size=40))
def test_the_sampler_sees_exactly_the_running_the_last_window_finished_and_the_top(window, top, plan):
    base = Recording()
    study = optuna.create_study(direction="maximize", sampler=WindowedSampler(base, window, top))
    finished: list[tuple[int, str, float]] = []  # in tell order
    held: list[optuna.Trial] = []
    for state, value in plan:
        trial = study.ask(D)
        # Independent expectation, from the full trial list at the time of this ask.
        running = {t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING}
        recent = [n for n, s, _ in finished if s in ("complete", "pruned")][-window:]
        complete = sorted(((v, -n) for n, s, v in finished if s == "complete"), reverse=True)[:top]
        expected = sorted(running | set(recent) | {-m for _, m in complete})
        assert base.seen[trial.number] == expected
        if state == "hold":
            held.append(trial)  # stays RUNNING: the constant liar's trials
            continue
        if held and value % 3 == 0:  # sometimes a held trial finishes first (out of order)
            old = held.pop(0)
            study.tell(old, float(value))
            finished.append((old.number, "complete", float(value)))
        if state == "complete":
            study.tell(trial, float(value))
        elif state == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
        finished.append((trial.number, state, float(value)))


def test_a_window_that_holds_every_trial_proposes_exactly_what_plain_tpe_does():
    def run(sampler) -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        out = []
        for _ in range(60):
            t = study.ask(D)
            study.tell(t, score(t.params))
            out.append(t.params)
        return out

    def tpe():
        return optuna.samplers.TPESampler(seed=5, multivariate=True, constant_liar=True)

    assert run(WindowedSampler(tpe(), 1000)) == run(tpe())
    # A small window conditions on fewer trials: the proposals part ways after the startup.
    small = run(WindowedSampler(tpe(), 5, top=0))
    assert small[:10] == run(tpe())[:10] and small != run(tpe())


def test_a_windowed_search_is_reproducible_with_a_seed_and_sees_a_bounded_history():
    runs = [drive(OptunaSearch(sma_space(), n_trials=80, seed=1, history_window=20, history_top=5))
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 80
    other = drive(OptunaSearch(sma_space(), n_trials=80, seed=2, history_window=20, history_top=5))
    assert other != runs[0]
    algo = OptunaSearch(sma_space(), n_trials=80, seed=1, history_window=20, history_top=5)
    drive(algo)
    assert isinstance(algo.sampler, WindowedSampler) and algo.sampler.window == 20
    assert all(f < s for f, s in ((p["fast"], p["slow"]) for p in runs[0]))


# -- the switch --------------------------------------------------------------------------

def test_the_switch_happens_at_study_trial_number_n():
    first, then = Recording(1), Recording(2)
    study = optuna.create_study(sampler=SwitchingSampler(first, then, at=7))
    for _ in range(15):
        t = study.ask(D)
        study.tell(t, 0.0)
    assert sorted(first.seen) == list(range(7)) and sorted(then.seen) == list(range(7, 15))


def test_optuna_search_switches_to_random_from_trial_n_and_stays_reproducible():
    def run() -> tuple[OptunaSearch, list[dict]]:
        algo = OptunaSearch(sma_space(), n_trials=40, seed=4, switch_at=25, switch_to="random")
        return algo, drive(algo)

    (a, pa), (_, pb) = run(), run()
    assert pa == pb
    assert isinstance(a.sampler, SwitchingSampler) and isinstance(a.sampler.then, optuna.samplers.RandomSampler)
    assert isinstance(a.sampler.first, optuna.samplers.TPESampler)
    both = OptunaSearch(sma_space(), n_trials=5, seed=0, history_window=50, switch_at=10, switch_to="random")
    assert isinstance(both.sampler.first, WindowedSampler)


@pytest.mark.parametrize("kw, match", [
    ({"history_window": 0}, "history_window must be an int >= 1"),
    ({"history_window": 10, "history_top": -1}, "history_top must be an int >= 0"),
    ({"history_top": 5}, "history_top needs history_window"),
    ({"switch_at": 10}, "switch_at and switch_to go together"),
    ({"switch_to": "random"}, "switch_at and switch_to go together"),
    ({"switch_at": -1, "switch_to": "random"}, "switch_at must be an int >= 0"),
    ({"switch_at": 5, "switch_to": "nope"}, "unknown sampler 'nope'"),
    ({"shared": True}, "shared=True needs a storage"),
])
def test_bad_scale_options_raise_a_typed_error_naming_them(kw, match):
    with pytest.raises(SearchSpaceError, match=match):
        OptunaSearch(sma_space(), n_trials=5, **kw)


# -- shared studies ----------------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_is_stale_tells_dead_drivers_of_this_host_from_live_and_foreign_ones(tmp_path):
    study = optuna.create_study()
    host = driver_id().split(":")[0]
    tags = {"dead": f"{host}:{_dead_pid()}:aaaa", "live": f"{host}:{os.getppid()}:bbbb",
            "foreign": f"another-host-xyz:{_dead_pid()}:cccc", "mine": driver_id(), "untagged": None}
    got = {}
    for name, tag in tags.items():
        t = study.ask(D)
        if tag is not None:
            t.set_user_attr(DRIVER_ATTR, tag)
        got[name] = is_stale(study.trials[t.number])
    assert got == {"dead": True, "live": False, "foreign": False, "mine": True, "untagged": False}


def test_a_shared_search_fails_only_a_dead_drivers_running_trials(tmp_path):
    path = tmp_path / "study.journal"
    first = OptunaSearch(sma_space(), n_trials=3, seed=0, storage=path, study_name="s", shared=True)
    first.start(None, MAX)
    study = first.study
    host = driver_id().split(":")[0]
    live, dead = study.ask(D), study.ask(D)
    live.set_user_attr(DRIVER_ATTR, f"{host}:{os.getppid()}:live")
    dead.set_user_attr(DRIVER_ATTR, f"{host}:{_dead_pid()}:dead")
    second = OptunaSearch(sma_space(), n_trials=3, seed=1, storage=path, study_name="s", shared=True)
    second.start(None, MAX)
    states = {t.number: t.state for t in second.study.get_trials(deepcopy=False)}
    assert states[live.number] == TrialState.RUNNING and states[dead.number] == TrialState.FAIL
    assert second.n_stale == 1 and second.n_total == 3  # n_trials: this driver's own budget
    drive(second)
    mine = [t for t in second.study.get_trials() if t.user_attrs.get(DRIVER_ATTR) == driver_id()
            and NOT_RUN_ATTR not in t.user_attrs and t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs[NUMBER_ATTR] for t in mine) == [0, 1, 2]
