"""The trial source of a walk-forward analysis: every window's phases multiplexed on one job.

:class:`WalkForwardSource` is one scheduler ``TrialSource`` for all windows. Each
window goes TRAIN -> VALIDATION -> TEST -> DONE; each phase is a
:class:`~rustybt_ray.optimize.trial_source.SearchSource` (objectives, journal reuse,
twins) over the window's search algorithm or a fixed list of candidates, with the
phase's dates in its journal keys. Trials are numbered globally in ask order and
routed back to (window, phase, local number) when their results arrive; a phase that
is complete opens the next one at once, so a window's validation and test trials
queue up while other windows are still searching.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rustybt_ray.cluster.protocol import Trial, TrialOutcome, TrialStatus
from rustybt_ray.optimize.journal import TrialJournal
from rustybt_ray.optimize.objectives import Objectives
from rustybt_ray.optimize.search import SearchAlgorithm, TrialRequest
from rustybt_ray.optimize.trial_source import SearchSource
from rustybt_ray.optimize.space import ParameterSpace
from rustybt_ray.optimize.windows import Span, Window

__all__ = ["WalkForwardSource", "TRAIN", "VALIDATION", "TEST", "DONE"]

TRAIN, VALIDATION, TEST, DONE = "train", "validation", "test", "done"


class FixedTrials(SearchAlgorithm):
    """A search that asks a fixed list of parameter sets, in order (validation and test phases)."""

    def __init__(self, params: Sequence[dict[str, Any]]) -> None:
        self._todo = [dict(p) for p in params]

    def ask(self, n: int = 1) -> list[TrialRequest]:
        """The next ``n`` parameter sets of the list."""
        count = max(0, min(n, len(self._todo) - self.n_asked))
        return [self._new_trial(self._todo[self.n_asked]) for _ in range(count)]

    def tell(self, number: int, values: Sequence[float] | None, status: str,
             metrics: Mapping[str, float] | None = None) -> None:
        """Record a result."""
        self._record(number, values, status)

    @property
    def is_finished(self) -> bool:
        """True once every parameter set was asked."""
        return self.n_asked >= len(self._todo)

    @property
    def n_total(self) -> int | None:
        """The length of the list."""
        return len(self._todo)

    def rewind(self) -> None:
        """Start over from the first parameter set."""
        self._reset_bookkeeping()


class Phase:
    """One phase (train, validation or test) of one window: its search source, segment and outcomes."""

    def __init__(self, name: str, source: SearchSource, span: Span) -> None:
        self.name, self.source, self.span = name, source, span
        self.outstanding = 0  # handed to the scheduler, not yet told
        self.told: dict[int, TrialOutcome] = {}  # local number -> outcome (objectives added)
        self.global_of: dict[int, int] = {}  # local number -> global trial number

    @property
    def done(self) -> bool:
        """Every trial asked and answered."""
        return self.outstanding == 0 and self.source.is_finished

    def outcomes(self) -> dict[int, TrialOutcome]:
        """Every answered trial by local number: run here, or reused from the journal or a twin."""
        return {**self.source.reused, **self.told}


class WindowState:
    """Where one window stands: its phases, its train candidates, its selection and its timeline."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.phases: dict[str, Phase] = {}
        self.current = TRAIN
        self.candidates: list[tuple[int, dict[str, Any], float]] = []  # (train local number, params, value)
        self.chosen: int | None = None  # index into candidates
        self.selected_by: str | None = None
        self.status = "running"
        self.first_dispatch: float | None = None
        self.last_result: float | None = None


class WalkForwardSource:
    """One ``TrialSource`` over every window's phases, so all windows share one job and one pool.

    Global trial numbers are handed out in ask order and mapped back to (window,
    phase, local number). Asks serve queued validation and test trials first (they
    finish windows), then the windows' train searches round-robin.

    ``coordinator``: the session's grouped :class:`~rustybt_ray.optimize.pruning.PruningCoordinator`
    actor, or None. Train trials are assigned to their window's group as they are
    handed out, so a pruner compares a trial only with its own window's; validation
    and test trials are never assigned, so never pruned.
    """

    def __init__(self, windows: list[Window], algorithms: list[SearchAlgorithm], objectives: Objectives,
                 journal: TrialJournal, job: dict[str, Any], top_k: int, need_returns: bool,
                 space: ParameterSpace | None, coordinator: Any = None) -> None:
        self.objectives, self.journal, self.job = objectives, journal, job
        self.coordinator = coordinator
        self.top_k, self.need_returns, self.space = top_k, need_returns, space
        self.sign = objectives.sign
        self.states = [WindowState(w) for w in windows]
        self.route: dict[int, tuple[WindowState, Phase, int]] = {}
        self._next = 0
        self._rr = 0
        self.t0 = time.perf_counter()
        for st, algo in zip(self.states, algorithms):
            self._open(st, TRAIN, algo)

    def _open(self, st: WindowState, name: str, algo: SearchAlgorithm) -> None:
        span = st.window.segments()[name]
        if isinstance(algo, FixedTrials):
            algo.start(self.space, self.objectives.pairs)
        # The trial's own bars in its journal key: the same parameters on another segment are another trial.
        job = dict(self.job, start=str(span.first), end=str(span.last))
        need = True if name == TEST else self.need_returns
        st.phases[name] = Phase(name, SearchSource(algo, self.objectives, self.journal, job, need), span)
        st.current = name

    def _take(self, st: WindowState, n: int) -> list[Trial]:
        phase = st.phases[st.current]
        over: dict[str, Any] = {"start": phase.span.first, "end": phase.span.last}
        if phase.name == TEST:
            over["with_returns"] = True
        out: list[Trial] = []
        for number, params in phase.source.ask(n):
            g = self._next
            self._next += 1
            self.route[g] = (st, phase, number)
            phase.global_of[number] = g
            phase.outstanding += 1
            out.append((g, params, dict(over)))
        if out and phase.name == TRAIN and self.coordinator is not None:
            # Not awaited: Ray delivers it long before a worker's first checkpoint, and a
            # report that came first would only get no decision.
            self.coordinator.assign.remote([t[0] for t in out], st.window.index)
        if out and st.first_dispatch is None:
            st.first_dispatch = time.perf_counter() - self.t0
        return out

    def ask(self, n: int) -> list[Trial]:
        """Up to ``n`` trials: queued validation/test trials first, then train trials round-robin over windows."""
        out: list[Trial] = []
        while len(out) < n:
            progressed = False
            for st in self.states:
                if st.current in (VALIDATION, TEST) and len(out) < n:
                    got = self._take(st, n - len(out))
                    out += got
                    progressed |= bool(got)
            active = [st for st in self.states if st.current == TRAIN and not st.phases[TRAIN].source.is_finished]
            if active and len(out) < n:
                share = max(1, (n - len(out)) // len(active))
                for j in range(len(active)):
                    if len(out) >= n:
                        break
                    got = self._take(active[(self._rr + j) % len(active)], min(share, n - len(out)))
                    out += got
                    progressed |= bool(got)
                self._rr += 1
            for st in self.states:
                progressed |= self._advance(st)
            if not progressed:
                break
        return out

    def tell(self, outcome: TrialOutcome) -> None:
        """Route a result to its window's phase, and move the window on when the phase is complete."""
        st, phase, local = self.route.pop(outcome.number)
        o = dataclasses.replace(outcome, number=local)
        phase.outstanding -= 1
        phase.source.tell(o)  # journals it and adds callable objectives to o.metrics
        phase.told[local] = o
        st.last_result = time.perf_counter() - self.t0
        self._advance(st)

    @property
    def ask_ahead(self) -> int | None:
        """Trials worth handing out now over every open phase (see ``SearchSource.ask_ahead``); None if any is unknown."""
        total = 0
        for st in self.states:
            if st.current == DONE:
                continue
            n = st.phases[st.current].source.ask_ahead
            if n is None:
                return None
            total += n
        return total

    @property
    def is_finished(self) -> bool:
        """True once every window is done."""
        return all(st.current == DONE for st in self.states)

    # -- phase transitions ---------------------------------------------------------------

    def _advance(self, st: WindowState) -> bool:
        moved = False
        while st.current != DONE and st.phases[st.current].done:
            {TRAIN: self._train_done, VALIDATION: self._validation_done, TEST: self._test_done}[st.current](st)
            st.last_result = time.perf_counter() - self.t0
            moved = True
        return moved

    def value(self, o: TrialOutcome) -> float:
        """The (first) objective value of a trial; NaN when it failed or has none."""
        if o.status != TrialStatus.COMPLETE or not o.metrics:
            return math.nan
        return self.objectives.values(o.metrics)[0]

    def _train_done(self, st: WindowState) -> None:
        scored = [(n, o.params, self.value(o)) for n, o in st.phases[TRAIN].outcomes().items()]
        scored = [s for s in scored if not math.isnan(s[2])]
        # Best first, ties by trial number: the order of OptimizationResult.top.
        scored.sort(key=lambda s: (-self.sign * s[2], s[0]))
        st.candidates = scored[: self.top_k]
        if not st.candidates:
            st.status, st.current = "no_selection", DONE
        elif st.window.validation is not None:
            self._open(st, VALIDATION, FixedTrials([c[1] for c in st.candidates]))
        else:
            st.chosen, st.selected_by = 0, "train"
            self._open(st, TEST, FixedTrials([st.candidates[0][1]]))

    def _validation_done(self, st: WindowState) -> None:
        outcomes = st.phases[VALIDATION].outcomes()
        values = [self.value(outcomes[i]) if i in outcomes else math.nan for i in range(len(st.candidates))]
        finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
        if finite:
            # Best on validation; ties go to the better train rank.
            st.chosen = min(finite, key=lambda vi: (-self.sign * vi[0], vi[1]))[1]
            st.selected_by = "validation"
        else:
            st.chosen, st.selected_by = 0, "train_fallback"
        self._open(st, TEST, FixedTrials([st.candidates[st.chosen][1]]))

    def _test_done(self, st: WindowState) -> None:
        o = st.phases[TEST].outcomes().get(0)
        ok = o is not None and o.status == TrialStatus.COMPLETE and o.returns is not None
        st.status = "ok" if ok else "test_failed"
        st.current = DONE
