"""``SearchSource``: a search algorithm as the scheduler's trial source, with the journal in between.

It turns a trial's metrics into objective values for the algorithm, answers trials
whose key is already in the journal without running them, makes a point proposed
twice while running wait for its twin's result, and (for expensive samplers) asks
ahead in a background thread. :class:`~rustybt_ray.optimize.optimizer.ParallelOptimizer`
uses one; a walk-forward analysis uses one per window phase.
"""

from __future__ import annotations

import math
import threading
import traceback
from collections import deque
from typing import Any

from rustybt_ray.cluster.protocol import TrialOutcome, TrialStatus
from rustybt_ray.optimize.journal import TrialJournal, trial_key
from rustybt_ray.optimize.objectives import Objectives
from rustybt_ray.optimize.search import SearchAlgorithm
from rustybt_ray.optimize.store import ResultStore

__all__ = ["SearchSource"]


class SearchSource:
    """Adapts a :class:`SearchAlgorithm` to the scheduler's ``TrialSource``.

    Turns metrics into objective values, and keeps the journal: a trial whose key is
    already there (from an earlier run, or earlier in this one) is answered from it
    without running; one whose twin is still running waits for the twin's result.

    With ``prefetch > 0`` (samplers whose ``ask`` is expensive, such as TPE late in a
    study), a background thread keeps up to ``prefetch`` trials asked in advance, so
    the sampler works while the scheduler waits in ``ray.wait`` (which releases the
    GIL) instead of while a worker waits for its next batch. One lock serializes every
    call into the algorithm (see the threading contract on :class:`SearchAlgorithm`):
    :meth:`ask`, :meth:`tell` and :attr:`is_finished` may be called from any thread,
    and the prefetch thread only ever calls the algorithm with the lock held.
    """

    def __init__(self, algorithm: SearchAlgorithm, objectives: Objectives, journal: TrialJournal | ResultStore,
                 job: dict[str, Any], need_returns: bool, prefetch: int = 0) -> None:
        self.algorithm = algorithm
        self.objectives = objectives
        self.journal = journal
        self.job = job
        self.need_returns = need_returns
        self.best: float | None = None
        self.sign = objectives.sign
        self.keys: dict[int, str] = {}
        self.running: dict[str, int] = {}  # key -> number of the trial that runs it
        self.twins: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.reused: dict[int, TrialOutcome] = {}  # answered from the journal or a twin
        #: A journal that holds the results (a :class:`ResultStore`) gets every trial, reused ones
        #: too, and ``reused`` stays empty: the source's memory does not grow with the sweep.
        self._stores = bool(getattr(journal, "holds_results", False))
        self.n_reused = 0
        self._lock = threading.RLock()
        self._more = threading.Condition(self._lock)
        self._buffer: deque[tuple[int, dict[str, Any]]] = deque()
        self._prefetch = prefetch
        # Read now, by the thread that builds the source before any ask (the threading contract).
        self._total = algorithm.n_total
        self._adaptive = getattr(algorithm, "prefetch_trials", 0) > 0
        self._stopped = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if prefetch > 0:
            self._thread = threading.Thread(target=self._fill, name="rustybt-prefetch", daemon=True)
            self._thread.start()

    def _fill(self) -> None:
        while True:
            with self._more:
                while not self._stopped and (len(self._buffer) >= self._prefetch or self.algorithm.is_finished):
                    self._more.wait()
                if self._stopped:
                    return
                try:
                    got = self._ask_fresh(1)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the scheduler's thread
                    self._error = exc
                    return
                self._buffer.extend(got)
                if not got:  # the algorithm waits for results: a tell wakes us
                    self._more.wait(0.05)
            # The lock is free here between asks, so the scheduler's tells get in.

    def close(self) -> None:
        """Stop the prefetch thread (trials it asked but nobody took stay unrun)."""
        with self._more:
            self._stopped = True
            self._more.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def ask(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``n`` trials to run: asked ahead ones first; journaled points and twins are answered, not returned."""
        with self._more:
            if self._error is not None:
                raise self._error
            out = [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]
            if len(out) < n:
                out += self._ask_fresh(n - len(out))
            self._more.notify_all()
            return out

    def _ask_fresh(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        while len(out) < n and not self.algorithm.is_finished:
            requests = self.algorithm.ask(n - len(out))
            if not requests:
                break
            for t in requests:
                key = trial_key(self.job, t.params)
                rec = self.journal.get(key, need_returns=self.need_returns)
                if rec is not None:
                    self._answer(t.number, t.params, key, rec)
                elif key in self.running:
                    self.twins.setdefault(key, []).append((t.number, t.params))
                else:
                    self.keys[t.number] = key
                    self.running[key] = t.number
                    out.append((t.number, t.params))
        return out

    def _answer(self, number: int, params: dict[str, Any], key: str, rec: dict[str, Any]) -> None:
        o = TrialOutcome(number, params, rec["status"], rec.get("metrics"), rec.get("error"),
                         float(rec.get("duration_s") or 0.0), int(rec.get("worker") or -1), rec.get("returns"),
                         attempts=0)
        self._with_objectives(o)  # callables are not part of the key: recompute, never trust a stored value
        self.n_reused += 1
        if not self._stores:
            self.reused[number] = o
        elif rec.get("number") != number and not self.journal.holds(number, key):
            # The store already holds this trial under its own number (a resumed sweep asks
            # it again with the same one: nothing to write); under another number it gets a
            # row of its own that shares the stored returns.
            self._journal(key, o)
        self._tell_algorithm(o)

    def _journal(self, key: str, o: TrialOutcome) -> None:
        self.journal.append([{
            "key": key, "number": o.number, "params": o.params, "metrics": o.metrics, "status": o.status,
            "error": o.error, "duration_s": o.duration_s, "worker": o.worker, "attempts": o.attempts,
            "returns": o.returns, "lost": bool(o.extra.get("lost")),
        }])

    def _tell_algorithm(self, o: TrialOutcome) -> None:
        steps = o.extra.get("intermediate")
        report = getattr(self.algorithm, "report", None)
        if steps and report is not None:
            # The driver's study learns the intermediate values too (Optuna's plots, TPE).
            for step, value in sorted(steps.items()):
                if math.isfinite(value):
                    report(o.number, int(step), value)
        if o.status == TrialStatus.PRUNED:
            last = [v for _, v in sorted((steps or {}).items()) if math.isfinite(v)]
            self.algorithm.tell(o.number, [last[-1]] if last else None, TrialStatus.PRUNED, o.metrics)
            return
        if o.status != TrialStatus.COMPLETE or o.metrics is None:
            self.algorithm.tell(o.number, None, TrialStatus.FAILED, o.metrics)
            return
        values = self.objectives.values(o.metrics)
        self.algorithm.tell(o.number, values, TrialStatus.COMPLETE, o.metrics)
        v = values[0]
        if not math.isnan(v) and (self.best is None or self.sign * v > self.sign * self.best):
            self.best = v

    def tell(self, outcome: TrialOutcome) -> None:
        """Journal a finished trial and tell the algorithm (and the trial's waiting twins)."""
        with self._more:
            self._tell(outcome)
            self._more.notify_all()

    def _tell(self, outcome: TrialOutcome) -> None:
        key = self.keys.pop(outcome.number, None)
        if key is not None:
            self.running.pop(key, None)
            # A trial failed by the infrastructure (its workers kept dying) may pass on a rerun;
            # a strategy's own exception would repeat, so it is journaled like a result.
            # The raw metrics are journaled: callable objectives are recomputed on reuse.
            # (A store keeps lost trials too, as rows of the table that are never reused.)
            if not self._stores and not outcome.extra.get("lost"):
                self._journal(key, outcome)
        self._with_objectives(outcome)
        if key is not None and self._stores:
            self._journal(key, outcome)  # the store's rows are the result: objective values included
        self._tell_algorithm(outcome)
        for number, params in self.twins.pop(key, []) if key is not None else []:
            twin = TrialOutcome(number, params, outcome.status, outcome.metrics, outcome.error, 0.0,
                                outcome.worker, outcome.returns, {"twin_of": outcome.number}, attempts=0)
            self.n_reused += 1
            if self._stores:
                self._journal(key, twin)
            else:
                self.reused[number] = twin
            self._tell_algorithm(twin)

    def _with_objectives(self, o: TrialOutcome) -> None:
        """Add callable objectives' values to the metrics; one that raises fails the trial, not the sweep."""
        if o.metrics is None or not self.objectives.callables:
            return
        try:
            o.metrics = self.objectives.add_to(o.metrics)
        except Exception:  # noqa: BLE001 - the user's objective function: report, go on
            o.status = TrialStatus.FAILED
            o.error = "the objective function raised:\n" + traceback.format_exc(limit=5)

    @property
    def ask_ahead(self) -> int | None:
        """Trials worth handing out now, for the scheduler's vector batches; None when unknown.

        A sampler that learns from results (``prefetch_trials > 0``: Optuna) gets its
        look-ahead, ``prefetch`` (or ``prefetch_trials``), so a vectorized sweep does
        not sample a whole study blind in one batch; a fixed search (grid, random) the
        trials it has left.
        """
        with self._lock:
            if self._adaptive:
                return max(1, self._prefetch or int(getattr(self.algorithm, "prefetch_trials", 1)))
            if self._total is None:
                return None
            return max(0, self._total - self.algorithm.n_asked) + len(self._buffer)

    @property
    def is_finished(self) -> bool:
        """True when the algorithm is finished and no asked-ahead trial is left to hand out."""
        with self._lock:
            return self.algorithm.is_finished and not self._buffer
