"""Optuna-driven search: :class:`OptunaSearch` (also called :data:`BayesianOptimizationAlgorithm`).

::

    algo = OptunaSearch(space, sampler="tpe", n_trials=200, seed=0,
                        storage="sqlite:///study.db", study_name="sma",
                        constraints=[("n_trades", ">=", 20)], pruner="median")
    result = ParallelOptimizer(algo, n_jobs=8).run(MyStrategy, "demo", objective="sharpe")
    optuna.visualization.plot_optimization_history(algo.study)

The optimizer asks for many trials at once (it keeps every worker fed), so several
trials are always in flight. TPE uses the *constant liar* (running trials count as
bad ones), which keeps it from proposing the same point twice; GP uses its batch
acquisition over running trials; CMA-ES, NSGA-II/III and QMC draw in-flight trials
from the current generation / sequence, and random ones are independent anyway. On
top of that, :meth:`OptunaSearch.ask` turns down a proposal equal to a running trial
(random startup draws, a small discrete space) and asks again, a bounded number of
times; a point equal to a *finished* one is handed out, and the optimizer answers it
from its journal without running it again.

Counting (``n_trials``): the finished trials of the *study* count, earlier runs
included (COMPLETE, PRUNED and FAIL), so resuming a finished study (a new
``OptunaSearch`` on the same storage) runs nothing. A second run of the *same*
object continues the study for another ``n_trials``, as ``study.optimize`` called
twice does (see :meth:`OptunaSearch.rewind`).
Two kinds of bookkeeping trials that never ran a backtest do not count; both carry the
user attr ``"rustybt_ray_not_run"``: proposals rejected by the space's constraints,
and trials a dead driver left RUNNING (marked FAIL on resume; their params are run
again first). One driver per study at a time: RUNNING trials found by :meth:`start`
are taken as left by a driver that died.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import optuna
from optuna.trial import TrialState

from rustybt_ray.cluster.protocol import TrialStatus
from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.optuna_scale import DRIVER_ATTR, driver_id, is_stale, wrap_sampler
from rustybt_ray.optimize.optuna_setup import (
    SAMPLER_NAMES,
    SINGLE_OBJECTIVE_SAMPLERS,
    check_storage,
    make_sampler,
    resolve_storage,
)
from rustybt_ray.optimize.pruning import make_pruner
from rustybt_ray.optimize.search import SearchAlgorithm, TrialRequest
from rustybt_ray.optimize.space import DiscreteParameter, ParameterSpace

__all__ = ["BayesianOptimizationAlgorithm", "OptunaSearch", "SAMPLER_NAMES", "metric_constraints"]

NOT_RUN_ATTR = "rustybt_ray_not_run"
NUMBER_ATTR = "rustybt_ray_number"  # a shared study's trial: its number in its driver's result
# Proposals the sampler may make in a row that break the space's constraints or repeat a
# running trial before a uniformly drawn feasible point is used instead (see OptunaSearch.ask).
MAX_REJECTS = 5
# A constraint whose metric is missing or NaN counts as violated by this much.
_VIOLATED = 1.0

ConstraintsArg = Union[Callable[[Mapping[str, float]], Sequence[float]], Sequence[Sequence[Any]]]
_OPS = ("<=", ">=", "<", ">")


def metric_constraints(spec: ConstraintsArg) -> Callable[[Mapping[str, float]], dict[str, float]]:
    """Turn ``constraints`` into a function ``metrics -> {name: value}`` (feasible when every value <= 0).

    ``spec`` is a callable ``metrics -> Sequence[float]`` (Optuna's convention; NaN counts as
    violated) or a list like ``[("n_trades", ">=", 20), ("max_drawdown", ">", -0.3)]``.
    """
    if callable(spec):
        fn = spec

        warned: list[bool] = []

        def from_callable(metrics: Mapping[str, float]) -> dict[str, float]:
            try:
                out = [float(v) for v in fn(metrics)]
            except Exception as exc:  # noqa: BLE001 - the user's function: the trial, not the sweep, pays
                if not warned:
                    warned.append(True)
                    warnings.warn(f"the constraints function raised {exc!r}; trials it raises on count as "
                                  "infeasible", RuntimeWarning, stacklevel=2)
                return {"constraints_error": _VIOLATED}
            return {str(i): (_VIOLATED if math.isnan(v) else v) for i, v in enumerate(out)}

        return from_callable
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or not spec:
        raise SearchSpaceError(f"constraints: give a callable or a list like [('n_trades', '>=', 20)], got {spec!r}")
    rules: list[tuple[str, str, float, float]] = []
    for item in spec:
        ok = isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3
        if ok:
            metric, op, bound = item
            ok = isinstance(metric, str) and op in _OPS and not isinstance(bound, bool) \
                and isinstance(bound, (int, float)) and math.isfinite(bound)
        if not ok:
            raise SearchSpaceError(
                f"bad constraint {item!r}: expected (metric, op, number) with op one of {', '.join(_OPS)}, "
                "like ('n_trades', '>=', 20)")
        b = float(bound)
        # Strict bounds move by one ulp so that "<= 0 is feasible" means exactly "> bound".
        edge = b if op in ("<=", ">=") else float(np.nextafter(b, math.inf if op == ">" else -math.inf))
        rules.append((f"{metric}{op}{bound}", metric, edge, 1.0 if op in ("<=", "<") else -1.0))

    def from_rules(metrics: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for key, metric, edge, sign in rules:
            v = metrics.get(metric)
            v = math.nan if v is None else float(v)
            out[key] = _VIOLATED if math.isnan(v) else sign * (v - edge)
        return out

    return from_rules


class OptunaSearch(SearchAlgorithm):
    """Model-based search with an Optuna sampler, over a :class:`ParameterSpace`, speaking ask/tell.

    Args:
        param_space: the space (or give it to :meth:`start`).
        sampler: ``"tpe"`` (default: multivariate TPE with the constant liar), ``"gp"``
            (needs torch and scipy), ``"cmaes"`` (needs cmaes; one objective), ``"qmc"``
            (scrambled Sobol; needs scipy), ``"random"``, ``"nsga2"``, ``"nsga3"``, or an
            ``optuna.samplers.BaseSampler`` instance.
        n_trials: stop after this many finished trials of the study, earlier runs included
            (see the module doc for what counts).
        timeout: stop asking this many seconds after the first :meth:`ask`.
        seed: seeds the sampler: the same seed and the same tells give the same trials.
        storage: an Optuna storage, a URL (``"sqlite:///study.db"``), or a path ending in
            ``.log``/``.journal`` for a journal file (``JournalStorage(JournalFileBackend)``).
        study_name: required with ``storage``; an existing study is resumed.
        constraints: on the trial's *metrics* (see :func:`metric_constraints`); only
            with TPE, GP, NSGA-II/III, whose infeasible trials then rank below feasible ones.
        pruner: ``"median"``, ``"halving"``, ``"hyperband"``, ``"none"``/None or an
            Optuna pruner; see :meth:`report`.
        enqueue: parameter dicts to try first (partial dicts are completed by the sampler).
        sampler_kwargs: extra arguments for a named sampler's constructor.
        history_window: past a few thousand trials, show the sampler only the last this
            many finished trials plus the ``history_top`` best (default 25, TPE's whole
            "good" set) and the running ones, so an ask costs O(window), not O(trials)
            (see :mod:`~rustybt_ray.optimize.optuna_scale`). None (default): every trial.
        switch_at, switch_to: from the study's trial number ``switch_at`` on, propose with
            ``switch_to`` (a sampler name or instance; ``"random"`` asks in ~0.1 ms) instead.
        shared: several drivers run this study at once (a journal file or RDB storage):
            RUNNING trials are only taken as stale if their driver (tagged on every trial)
            is a dead process of this host, and ``n_trials`` counts this driver's trials only.
    """

    #: Trials per worker the optimizer asks ahead in a background thread: a TPE ask
    #: costs 5-15 ms late in a study, which the driver then spends while waiting on
    #: the workers instead of while a worker waits for it.
    prefetch_trials = 8

    def __init__(
        self,
        param_space: ParameterSpace | None = None,
        *,
        sampler: str | optuna.samplers.BaseSampler = "tpe",
        n_trials: int | None = None,
        timeout: float | None = None,
        seed: int | None = None,
        storage: str | os.PathLike[str] | optuna.storages.BaseStorage | None = None,
        study_name: str | None = None,
        constraints: ConstraintsArg | None = None,
        pruner: str | optuna.pruners.BasePruner | None = None,
        enqueue: Sequence[Mapping[str, Any]] | None = None,
        sampler_kwargs: Mapping[str, Any] | None = None,
        history_window: int | None = None,
        history_top: int | None = None,
        switch_at: int | None = None,
        switch_to: str | optuna.samplers.BaseSampler | None = None,
        shared: bool = False,
    ) -> None:
        if param_space is not None and not isinstance(param_space, ParameterSpace):
            raise SearchSpaceError(f"param_space must be a ParameterSpace, got {param_space!r}")
        if n_trials is None and timeout is None:
            raise SearchSpaceError("OptunaSearch needs n_trials or timeout (or both)")
        if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
            raise SearchSpaceError(f"n_trials must be an int >= 1, got {n_trials!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise SearchSpaceError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise SearchSpaceError(f"seed must be an int >= 0, got {seed!r}")
        if storage is not None and not study_name:
            raise SearchSpaceError("storage needs a study_name, so that the study can be found again to resume it")
        self._space = param_space
        self.n_trials, self.timeout, self.seed = n_trials, timeout, seed
        self.study_name = study_name
        check_storage(storage)
        self._storage_arg = storage  # resolved at start(): a journal file is created then, not here
        self._storage: str | optuna.storages.BaseStorage | None = None
        self._constraint_fn = metric_constraints(constraints) if constraints is not None else None
        self.sampler = make_sampler(sampler, seed, dict(sampler_kwargs or {}), constraints is not None)
        then = None if switch_to is None else make_sampler(switch_to, seed, {}, constraints is not None)
        self.sampler = wrap_sampler(self.sampler, history_window=history_window, history_top=history_top,
                                    switch_at=switch_at, switch_to=then)
        if not isinstance(shared, bool):
            raise SearchSpaceError(f"shared must be True or False, got {shared!r}")
        if shared and storage is None:
            raise SearchSpaceError("shared=True needs a storage that several drivers reach (a .journal file, an RDB URL)")
        self.shared = shared
        self.driver = driver_id()
        """The tag this driver's trials carry in a shared study (user attr ``rustybt_ray_driver``)."""
        self.pruner: optuna.pruners.BasePruner | None = make_pruner(pruner)
        if isinstance(enqueue, Mapping) or any(not isinstance(p, Mapping) for p in (enqueue or ())):
            raise SearchSpaceError(f"enqueue: give a list of parameter dicts, got {enqueue!r}")
        self._enqueue = [dict(p) for p in (enqueue or ())]
        if param_space is not None:
            for p in self._enqueue:
                _check_params(param_space, p, "enqueue")
        # Feasible points drawn when the sampler keeps proposing infeasible or running ones.
        self._rng = np.random.default_rng(seed)
        self._study: optuna.Study | None = None
        self._trials: dict[int, optuna.Trial] = {}  # our number -> the RUNNING optuna trial
        self._keys: dict[int, str] = {}  # our number -> its params' key, while running
        self._inflight: dict[str, int] = {}  # params' key -> trials running with them
        self._reported: set[int] = set()  # our numbers that reported an intermediate value
        self._done_before = 0
        self._continue = False  # set by rewind(): this run's n_trials counts only its own trials
        self._asked_run = 0
        self._t0: float | None = None
        self.n_rejected = 0
        """Proposals not handed out: breaking the space's constraints, or repeating a running trial."""
        self.n_stale = 0
        """Trials found RUNNING by the last :meth:`start`, marked FAIL and enqueued again."""

    # -- setup ----------------------------------------------------------------------------

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (after :meth:`start`), for Optuna's visualizations and analyses."""
        if self._study is None:
            raise SearchSpaceError("OptunaSearch.study exists once the search started (start() or a run)")
        return self._study

    def check_objectives(self, objectives: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """The base checks, plus what this sampler and pruner can search; creates no study."""
        objs = super().check_objectives(objectives)
        if not objs:
            raise SearchSpaceError("OptunaSearch needs at least one objective")
        if len(objs) > 1:
            if isinstance(self.sampler, tuple(SINGLE_OBJECTIVE_SAMPLERS.values())):
                raise SearchSpaceError(
                    f"sampler {type(self.sampler).__name__} handles one objective only, got {len(objs)}; "
                    "use 'tpe', 'nsga2', 'nsga3', 'gp', 'qmc' or 'random'")
            if self.pruner is not None:
                raise SearchSpaceError("a pruner needs a single objective; drop the pruner or keep one objective")
        return objs

    def rewind(self) -> None:
        """Continue the same study in the next run, for another ``n_trials`` (the ``study.optimize`` way).

        The next :meth:`start` counts only the trials of that run toward ``n_trials``
        (``timeout`` restarts too); the study keeps every trial, so the sampler goes on
        learning from all of them.
        """
        self._reset_bookkeeping()
        self._continue = True

    def start(self, space: ParameterSpace | None, objectives: Sequence[tuple[str, str]]) -> None:
        """Create or load the study, fail trials a dead driver left RUNNING and enqueue them again."""
        super().start(space, objectives)
        space = self._space
        if space is None:
            raise SearchSpaceError("OptunaSearch has no parameter space: pass one to the constructor or start()")
        for p in self._enqueue:
            _check_params(space, p, "enqueue")
        directions = [d for _, d in self._objectives]
        if self._storage is None and self._storage_arg is not None:
            self._storage = resolve_storage(self._storage_arg)
        self._dists = space.to_optuna_distributions()
        # Optuna picks float grid values as low + k*step; snapped to the space's own rounded values.
        self._float_steps = [p for p in space if isinstance(p, DiscreteParameter) and not p.is_int]
        if self._study is None:
            # NopPruner, not None: Optuna's default would be a MedianPruner nobody asked for.
            pruner = self.pruner if self.pruner is not None else optuna.pruners.NopPruner()
            self._study = optuna.create_study(storage=self._storage, sampler=self.sampler, pruner=pruner,
                                              study_name=self.study_name, load_if_exists=True, directions=directions)
        study = self._study
        have = [d.name.lower() for d in study.directions]
        if have != directions:
            raise SearchSpaceError(
                f"study {study.study_name!r} has directions {have} but the objectives {list(self._objectives)} "
                f"need {directions}; use another study_name")
        # Trials this object left in flight in an earlier run are stale now.
        self._trials.clear()
        self._keys.clear()
        self._inflight.clear()
        done, stale = 0, []
        for t in study.get_trials(deepcopy=False):
            if t.state == TrialState.RUNNING:
                if not self.shared or is_stale(t):  # a live driver's trial is not ours to fail
                    stale.append(t)
            elif t.state.is_finished() and NOT_RUN_ATTR not in t.user_attrs:
                done += 1
        for t in stale:
            study._storage.set_trial_user_attr(t._trial_id, NOT_RUN_ATTR, "left running by a stopped driver; rerun")
            study.tell(t.number, state=TrialState.FAIL)
            if t.params and _fits(space, t.params):  # an edited space may no longer hold them
                study.enqueue_trial(dict(t.params), user_attrs={"rustybt_ray_rerun_of": t.number})
        for p in self._enqueue:
            # skip_if_exists: resuming a study does not run the user's points again.
            study.enqueue_trial(p, skip_if_exists=True)
        self.n_stale = len(stale)
        # Resuming (a new object on a stored study) counts the study's earlier trials; a
        # rewound object's next run is another n_trials.
        self._done_before = 0 if self._continue or self.shared else done
        self._continue, self._asked_run, self._t0 = False, 0, None

    # -- ask/tell -------------------------------------------------------------------------

    def ask(self, n: int = 1) -> list[TrialRequest]:
        """Up to ``n`` new trials from ``study.ask`` (enqueued points first); none once finished."""
        study = self.study
        if self._t0 is None:
            self._t0 = time.monotonic()
        out: list[TrialRequest] = []
        rejects = 0  # proposals turned down in a row
        while len(out) < n and not self.is_finished:
            trial = study.ask(self._dists)
            if self.shared:
                trial.set_user_attr(DRIVER_ATTR, self.driver)
            params = self._snap(trial.params)
            feasible = self._space.satisfies(params)  # type: ignore[union-attr]
            key = _key(params)
            if feasible and (key not in self._inflight or rejects > MAX_REJECTS):
                req = self._new_trial(params)
                if self.shared:  # the study's record of which driver ran it, under which result number
                    trial.set_user_attr(NUMBER_ATTR, req.number)
                self._trials[req.number] = trial
                self._inflight[key] = self._inflight.get(key, 0) + 1
                self._keys[req.number] = key
                self._asked_run += 1
                out.append(req)
                rejects = 0
                continue
            rejects += 1
            self.n_rejected += 1
            if feasible:
                # The same point as a running trial (random startup draws; TPE converging on
                # a small discrete space): told FAIL, which samplers ignore (the point is not
                # bad, only taken), and asked again. Past MAX_REJECTS it is accepted: the
                # optimizer runs a repeated point once.
                trial.set_user_attr(NOT_RUN_ATTR, "same params as a running trial")
                study.tell(trial, state=TrialState.FAIL)
            else:
                # Samplers cannot express "fast < slow". A proposal that breaks it is told
                # PRUNED, not FAIL: TPE ranks pruned trials without intermediate values below
                # every complete one, so it learns to avoid the region, while FAIL trials are
                # invisible to every sampler. The attr keeps it out of the n_trials count.
                trial.set_user_attr(NOT_RUN_ATTR, "violates the parameter space's constraints")
                study.tell(trial, state=TrialState.PRUNED)
            if rejects % MAX_REJECTS == 0:
                # The sampler keeps proposing the same taken or infeasible point (GP, CMA-ES
                # and QMC ignore pruned trials; TPE exploits a found optimum): bound the
                # attempts with a feasible point drawn uniformly (seeded), enqueued so it is
                # still Optuna's trial. Every ask makes progress.
                study.enqueue_trial(self._fresh_point())
        return out

    def _fresh_point(self) -> dict[str, Any]:
        """A feasible point drawn uniformly, not running if one can be found in a few draws."""
        space = self._space
        assert space is not None
        for _ in range(20):
            params = space.sample(self._rng)
            if _key(params) not in self._inflight:
                break
        return params

    def _snap(self, params: dict[str, Any]) -> dict[str, Any]:
        """Float step values as the space writes them (0.3, not Optuna's 0.30000000000000004)."""
        for p in self._float_steps:
            v = params.get(p.name)
            if isinstance(v, float):
                params[p.name] = p.value_at(int(round((v - p.min_value) / p.step)))
        return params

    def tell(self, number: int, values: Sequence[float] | None, status: str,
             metrics: Mapping[str, float] | None = None) -> None:
        """Report trial ``number`` to the study; NaN objective values are told as FAIL (Optuna rejects NaN).

        With ``constraints``, a trial's constraint values are computed from ``metrics`` and
        stored with ``Trial.set_constraint`` (Optuna's ``"constraints:<name>"`` system attrs)
        before the tell, so the sampler sees them. A complete trial then needs its metrics.
        """
        trial = self._trials.get(number)
        if trial is None and isinstance(number, int) and 0 <= number < self.n_asked and number not in \
                self.__dict__.get("_told", ()):
            raise SearchSpaceError(f"tell({number}): trial {number} was abandoned when the search restarted")
        cons = None
        if self._constraint_fn is not None:
            if metrics is not None:
                cons = self._constraint_fn(metrics)
            elif status == TrialStatus.COMPLETE:
                raise SearchSpaceError(f"tell({number}): constraints are computed from metrics; pass metrics=")
        vals = self._record(number, values, status)  # validates; raises before anything is stored
        assert trial is not None
        del self._trials[number]
        key = self._keys.pop(number)
        self._inflight[key] -= 1
        if not self._inflight[key]:
            del self._inflight[key]
        study = self.study
        for name, v in (cons or {}).items():
            trial.set_constraint(name, v)
        if status == TrialStatus.COMPLETE:
            assert vals is not None
            if any(math.isnan(v) for v in vals):
                trial.set_user_attr("rustybt_ray_nan_values", True)
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, list(vals))
        elif status == TrialStatus.PRUNED:
            reported = number in self._reported
            self._reported.discard(number)
            if not reported and values and len(self._objectives) == 1 and math.isfinite(float(values[0])):
                trial.report(float(values[0]), 0)  # so Optuna keeps the value it was stopped at
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)

    def report(self, number: int, step: int, value: float) -> bool:
        """Store an intermediate ``value`` at ``step`` for running trial ``number``; True if it should stop.

        The decision is the configured pruner's (no pruner: always False). One objective only.
        Non-finite values (no trade yet gives a NaN Sharpe) are not evidence: False, not stored.
        """
        if len(self._objectives) != 1:
            raise SearchSpaceError("report(): intermediate values and pruning need a single objective")
        trial = self._trials.get(number)
        if trial is None:
            raise SearchSpaceError(f"report({number}): trial {number} is not running")
        if value is None or not math.isfinite(value):
            return False
        trial.report(float(value), int(step))
        self._reported.add(number)
        return bool(trial.should_prune())

    # -- progress -------------------------------------------------------------------------

    @property
    def is_finished(self) -> bool:
        """True once ``n_trials`` are reached (earlier runs counted) or ``timeout`` passed since the first ask."""
        if self._study is None:
            return False
        if self.n_trials is not None and self._done_before + self._asked_run >= self.n_trials:
            return True
        return self.timeout is not None and self._t0 is not None and time.monotonic() - self._t0 >= self.timeout

    @property
    def n_total(self) -> int | None:
        """Trials this run will ask: ``n_trials`` minus those the study already finished (None with only a timeout)."""
        if self.n_trials is None:
            return None
        return max(0, self.n_trials - self._done_before)

    @property
    def n_done_before(self) -> int:
        """Finished trials that counted toward ``n_trials`` when the search (re)started."""
        return self._done_before


BayesianOptimizationAlgorithm = OptunaSearch
"""The name the user guide uses for :class:`OptunaSearch`."""


def _key(params: Mapping[str, Any]) -> str:
    """A hashable identity for a params dict (values may be unhashable categorical choices)."""
    return repr(tuple(params.items()))


def _fits(space: ParameterSpace, params: Mapping[str, Any]) -> bool:
    """True when ``params`` are a valid point of ``space``."""
    try:
        _check_params(space, params, "params")
    except SearchSpaceError:
        return False
    return True


def _check_params(space: ParameterSpace, params: Mapping[str, Any], what: str) -> None:
    """Raise unless every value is one the space can take (and a full dict meets the constraints)."""
    dists = space.to_optuna_distributions()
    for name, value in params.items():
        if name not in dists:
            raise SearchSpaceError(f"{what} {dict(params)!r}: unknown parameter {name!r}; the space has "
                                   f"{', '.join(space.names)}")
        dist = dists[name]
        try:
            inside = dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):
            inside = False
        if not inside:
            raise SearchSpaceError(f"{what} {dict(params)!r}: {name}={value!r} is outside the space ({dist})")
    if len(params) == len(space) and not space.satisfies(params):
        raise SearchSpaceError(f"{what} {dict(params)!r} breaks the space's constraints")
