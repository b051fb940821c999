"""Early stopping on history length: an Optuna pruner that reaches trials while they run in workers.

A backtest is not iterative training, but it can be judged early: run the first
years, compute the objective on the bars so far, and stop the trials that are
clearly worse than finished ones at the same point. Optuna's pruners
(``MedianPruner``, ``SuccessiveHalvingPruner``, ``HyperbandPruner``) decide that from
intermediate values, but they live in the driver's study while the trials run in
worker actors, and a Ray actor cannot call into the driver.

So the pruner gets its own small actor, the :class:`PruningCoordinator`. It holds a
mirror study (in-memory storage, the sweep's direction and pruner) that sees exactly
what a pruner needs: every running trial's intermediate values and which trials
finished. Workers report ``(trial, step, value)`` at each checkpoint (by default
after years 1, 2, 4, 8, ... of the run) and wait for the decision; the driver's study learns
the intermediate values with each finished trial, so Optuna's plots and the TPE
sampler see them too.

Workers do not wait for decisions (a pruned trial stops one checkpoint late), and
checkpoints are few and spaced out: reporting every year of a 20-year run cost 25 ms
per 42 ms trial on 2 cores, mostly Ray calls competing with the workers for CPU;
years 1, 2, 4, 8, 16 cost about 13 ms there. As in any
asynchronous parallel pruning, decisions depend on which trials happened to finish
first; with one worker they are reproducible.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import optuna
import ray

from rustybt_ray.cluster.protocol import TrialStatus
from rustybt_ray.errors import SearchSpaceError

PRUNER_NAMES = ("median", "halving", "hyperband", "none")


def pruning_spec(pruner: Any, objectives: Any, every: str | int) -> dict[str, Any] | None:
    """The :class:`~rustybt_ray.optimize.session.SweepSession`'s early-stopping spec, or None without a pruner.

    ``objectives`` is the sweep's :class:`~rustybt_ray.optimize.objectives.Objectives`;
    ``every`` is checked now (see :func:`~rustybt_ray.engine.run.checkpoint_bars`), so a
    bad value fails before Ray starts.
    """
    import numpy as np

    from rustybt_ray.engine.run import checkpoint_bars

    p = make_pruner(pruner)
    if p is None:
        return None
    if len(objectives.names) > 1:
        raise SearchSpaceError("pruning needs a single objective; drop the pruner or keep one objective")
    checkpoint_bars(np.empty(0, dtype="datetime64[ns]"), 0, 0, every)
    name = objectives.names[0]
    return {"pruner": p, "direction": objectives.directions[0],
            "objective": objectives.callables.get(name, name), "every": every, "grouped": False}


def make_pruner(pruner: str | optuna.pruners.BasePruner | None) -> optuna.pruners.BasePruner | None:
    """An Optuna pruner from a name (``median``, ``halving``, ``hyperband``, ``none``) or an instance."""
    if pruner is None or pruner == "none":
        return None
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "median":
        # Judge from the 2nd checkpoint on, once 5 trials finished: one year alone is noise.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise SearchSpaceError(f"unknown pruner {pruner!r}; use one of {', '.join(PRUNER_NAMES)} or an optuna pruner")


class PruningCoordinator:
    """The pruner's mirror study; wrapped as a Ray actor by :data:`PruningCoordinatorActor`.

    Trials are keyed by the sweep's trial number. ``report`` creates the mirror trial
    on first sight; ``finish`` closes it (complete, pruned or failed) so later
    decisions compare against it.

    With ``grouped=True`` (walk-forward: trials of different windows must not be
    compared), each group has its own mirror study and only trials the driver
    assigned to a group (:meth:`assign`) are judged; any other trial (validation, test) gets
    no decision and is never stopped.
    """

    def __init__(self, pruner: optuna.pruners.BasePruner, direction: str, grouped: bool = False) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._pruner, self._direction, self.grouped = pruner, direction, grouped
        self.studies: dict[Any, optuna.Study] = {}
        self.study = self._study(None) if not grouped else None
        self.groups: dict[int, Any] = {}  # trial number -> group (grouped mode)
        self.trials: dict[int, optuna.trial.Trial] = {}
        self.reports = 0
        self.pruned = 0

    def _study(self, group: Any) -> optuna.Study:
        study = self.studies.get(group)
        if study is None:
            # A pruner of its own per group: some (Hyperband) keep per-study state.
            pruner = self._pruner if not self.grouped else copy.deepcopy(self._pruner)
            study = self.studies[group] = optuna.create_study(
                direction=self._direction, pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
        return study

    def assign(self, numbers: list[int], group: Any) -> None:
        """Grouped mode: judge trials ``numbers`` against the other trials of ``group`` only."""
        for n in numbers:
            self.groups[n] = group

    def _mirror_of(self, number: int) -> optuna.Study | None:
        if not self.grouped:
            return self.study
        group = self.groups.get(number)
        return None if group is None else self._study(group)

    def report(self, number: int, step: int, value: float) -> bool:
        """Record ``value`` at ``step`` for trial ``number``; True when the trial should stop."""
        trial = self.trials.get(number)
        if trial is None:
            study = self._mirror_of(number)
            if study is None:  # not a trial this coordinator judges
                return False
            trial = self.trials[number] = study.ask()
        self.reports += 1
        if value is None or not math.isfinite(value):
            # No trade yet gives a NaN Sharpe: not evidence of a bad trial, so no decision.
            return False
        trial.report(float(value), int(step))
        prune = bool(trial.should_prune())
        self.pruned += prune
        return prune

    def finish(self, number: int, status: str, value: float | None) -> None:
        """Close trial ``number``: ``status`` "complete" (with its final value), "pruned" or "failed"."""
        study = self._mirror_of(number)
        self.groups.pop(number, None)
        trial = self.trials.pop(number, None)
        if study is None:
            return
        if trial is None:
            if status != TrialStatus.COMPLETE or value is None or not math.isfinite(value):
                return
            trial = study.ask()  # finished before its first checkpoint: still a reference point
        if status == TrialStatus.COMPLETE and value is not None and math.isfinite(value):
            study.tell(trial, float(value))
        elif status == TrialStatus.PRUNED:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def stats(self) -> dict[str, int]:
        """Reports received, trials told to stop, trials still open."""
        return {"reports": self.reports, "pruned": self.pruned, "open": len(self.trials)}


#: The coordinator as an actor: no CPU reserved (it only answers small calls), and
#: calls run one at a time, in order, so the mirror study needs no locks.
PruningCoordinatorActor = ray.remote(num_cpus=0, max_restarts=0)(PruningCoordinator)

