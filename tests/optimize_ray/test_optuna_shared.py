"""One Optuna study on a JournalStorage file, searched by two drivers at once (two ParallelOptimizer runs)."""

from __future__ import annotations

import threading

import optuna
from optuna.trial import TrialState

from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import DiscreteParameter, ParallelOptimizer, ParameterSpace
from rustybt_ray.optimize.optuna_scale import DRIVER_ATTR
from rustybt_ray.optimize.optuna_search import NOT_RUN_ATTR, NUMBER_ATTR, OptunaSearch


def test_two_drivers_share_a_journal_study_and_each_keeps_its_own_trials(ray_session, tmp_path):
    space = ParameterSpace([DiscreteParameter("fast", 2, 40), DiscreteParameter("slow", 10, 120)],
                           constraints=["fast < slow"])
    path = tmp_path / "shared.journal"
    n = {"a": 14, "b": 10}
    results, errors = {}, []

    def drive(name: str, seed: int) -> None:
        try:
            # Each driver opens the file itself, as a separate process would.
            algo = OptunaSearch(space, n_trials=n[name], seed=seed, storage=path, study_name="sma", shared=True)
            # Two drivers in one process: each its own tag, as two processes would have.
            algo.driver = f"test-host-{name}:0:{name}"
            opt = ParallelOptimizer(algo, n_jobs=1, progress=False)
            results[name] = opt.run(SmaCrossover, "demo", "2019-01-01", "2020-12-31",
                                    journal=tmp_path / f"{name}.jsonl")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(k, s)) for k, s in (("a", 0), ("b", 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    study = optuna.load_study(study_name="sma", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))
    trials = study.get_trials(deepcopy=False)
    assert len({t.number for t in trials}) == len(trials)  # study numbers unique
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # none left in flight
    for name in ("a", "b"):
        res = results[name]
        assert len(res) == n[name] and res.trials["number"].to_list() == list(range(n[name]))
        ran = [t for t in trials if t.user_attrs.get(DRIVER_ATTR) == f"test-host-{name}:0:{name}"
               and NOT_RUN_ATTR not in t.user_attrs]
        # The study holds every trial of this driver's result, none lost: same numbers, same params.
        by_number = {t.user_attrs[NUMBER_ATTR]: t for t in ran}
        assert sorted(by_number) == list(range(n[name]))
        for row in res.trials.iter_rows(named=True):
            t = by_number[row["number"]]
            assert (t.params["fast"], t.params["slow"]) == (row["fast"], row["slow"])
            if t.state == TrialState.COMPLETE and row["sharpe"] is not None:
                assert t.value == row["sharpe"]
    counted = [t for t in trials if NOT_RUN_ATTR not in t.user_attrs and t.state.is_finished()]
    assert len(counted) == n["a"] + n["b"]
    # Both drivers' studies see the whole study: each result's best is no better than the study's.
    assert study.best_value >= max(r.best["metrics"]["sharpe"] for r in results.values())
