"""The scheduler: feeds trials from a search to the worker actors, in measured batches.

The driver only schedules; actors own the state. The loop:

- asks the trial source for as many trials as fill every live actor up to
  ``batches_in_flight`` batches, so no actor idles while the driver thinks, and
  sampling overlaps execution (the next batch is queued before the last finishes);
- sizes batches from the measured trial time, so one actor call does at least
  ``min_batch_seconds`` of work and Ray's per-call cost (~1 ms) is amortized;
  a vector job (a batched kernel, whose per-trial time falls with the batch) instead
  gets big batches from the first one: the source's look-ahead shared over the
  actors, capped by the kernel's trials per call (its byte budget);
- with a routing key in the job (``JobSpec.route``), sends trials with the same key
  to the same actor and batch, so each cached indicator is computed once per actor;
- streams results back with ``ray.wait``, telling the source as they arrive;
- when an actor dies (killed, out of memory, node lost), replaces it and retries
  its in-flight trials on live actors, up to ``max_retries`` times each. A strategy
  exception is not a death: it comes back as a failed trial and is not retried.

``cluster`` knows nothing of Optuna: a source is anything with ``ask``/``tell``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, WorkerCrashedError

from rustybt_ray.cluster.protocol import JobSpec, Trial, TrialOutcome, TrialStatus
from rustybt_ray.errors import ClusterError, SearchSpaceError


class TrialSource(Protocol):
    """Where trials come from and results go: the scheduler's view of a search algorithm.

    A source may also have an ``ask_ahead`` attribute (``int | None``): how many trials
    it can usefully hand out now (the rest of a grid; an adaptive sampler's
    look-ahead, so a study is not sampled blind in one go). Vector jobs size their
    batches from it (see :meth:`Scheduler._round_size`); None or absent means unknown.
    """

    def ask(self, n: int) -> list[Trial]:
        """Up to ``n`` new trials, ``(number, params[, overrides])``; fewer or none when it must wait."""
        ...

    def tell(self, outcome: TrialOutcome) -> None:
        """Record a finished (complete or failed) trial."""
        ...

    @property
    def is_finished(self) -> bool:
        """True when ``ask`` will never return a trial again."""
        ...


@dataclass
class SchedulerStats:
    """What one scheduling run did (for benchmarks and tests)."""

    batches: int = 0
    trials: int = 0
    retried: int = 0
    workers_replaced: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    kernel_trials: int | None = None  #: a vector job's most trials per batch (byte budget, max_batch_size)
    routed_keys: int = 0  #: distinct routing keys seen (0 without routing)
    driver_busy_s: float = 0.0  #: driver time outside ``ray.wait`` (its overhead)
    max_inflight: int = 0  #: most batches queued on the actors at once
    wall_s: float = 0.0


class Scheduler:
    """Runs one job's trials on a :class:`~rustybt_ray.cluster.pool.WorkerPool`.

    Args:
        pool: the live worker pool; the job must already be prepared on it.
        spec: the job.
        min_batch_seconds: target work per actor call.
        max_batch_size: cap on trials per call.
        batches_in_flight: batches queued per actor.
        max_retries: how often a trial whose actor died is retried before it is failed.
        on_result: called with each outcome as it arrives (progress bars).
        keep_results: keep every outcome for ``run``'s return value; False for sweeps whose
            source streams results to disk (``run`` then returns an empty dict).
    """

    def __init__(
        self,
        pool: Any,
        spec: JobSpec,
        *,
        min_batch_seconds: float = 0.2,
        max_batch_size: int = 256,
        batches_in_flight: int = 2,
        max_retries: int = 3,
        health_check_interval_s: float = 10.0,
        on_result: Callable[[TrialOutcome], None] | None = None,
        keep_results: bool = True,
    ) -> None:
        self.pool = pool
        self.spec = spec
        self.min_batch_seconds = min_batch_seconds
        self.max_batch_size = max_batch_size
        self.batches_in_flight = batches_in_flight
        self.max_retries = max_retries
        self.health_check_interval_s = health_check_interval_s
        self.on_result = on_result
        #: False: outcomes go only to the source (which stores them) and ``run`` returns {}, so
        #: the scheduler's memory does not grow with the sweep.
        self.keep_results = keep_results
        self.stats = SchedulerStats()
        self._trial_s: float | None = None  # running mean of measured trial time
        self._vector = spec.vector
        k = spec.kernel_trials() if self._vector else None
        #: A vector job's batch cap: the kernel's trials per call, and max_batch_size.
        self._kernel_k = min(max_batch_size, k) if k is not None else max_batch_size
        if self._vector:
            self.stats.kernel_trials = self._kernel_k
        self._owner: dict[Any, int] = {}  # routing key -> the worker that runs it (sticky)

    def batch_size(self) -> int:
        """Trials per actor call: enough for ``min_batch_seconds`` of work, measured as results arrive.

        Until the first results arrive, batches hold one trial so timing starts at once.
        """
        if self._trial_s is None or self._trial_s <= 0:
            return 1
        return max(1, min(self.max_batch_size, math.ceil(self.min_batch_seconds / self._trial_s)))

    def run(self, source: TrialSource) -> dict[int, tuple[TrialOutcome, int]]:
        """Run trials until the source is finished and nothing is in flight.

        Returns ``{number: (outcome, attempts)}``: every trial asked has exactly one entry.
        """
        t_start = time.perf_counter()
        busy = 0.0
        inflight: dict[Any, tuple[int, list[Trial]]] = {}
        per_worker: dict[int, int] = {}
        retry: deque[Trial] = deque()
        attempts: dict[int, int] = {}
        results: dict[int, tuple[TrialOutcome, int]] = {}
        last_health = time.monotonic()
        t0 = time.perf_counter()
        while True:
            # Keep every live actor supplied.
            while self._dispatch(source, retry, inflight, per_worker, attempts):
                pass
            if not inflight:
                if retry and not self.pool.workers:
                    raise ClusterError("no live workers left to retry trials on")
                if source.is_finished and not retry:
                    break
                if not retry:
                    # The source is waiting for results it will never get: nothing is running.
                    raise SearchSpaceError("the search algorithm returned no trials and nothing is running")
                continue
            self.stats.max_inflight = max(self.stats.max_inflight, len(inflight))
            busy += time.perf_counter() - t0
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=self.health_check_interval_s)
            t0 = time.perf_counter()
            if time.monotonic() - last_health >= self.health_check_interval_s:
                # Also while other workers keep answering: a frozen actor (a stuck node, a
                # stopped process) must not hold its batch until the rest of the sweep is done.
                self._health_check(inflight, per_worker, retry, attempts, results, source)
                last_health = time.monotonic()
            for ref in ready:
                if ref not in inflight:  # its worker was just replaced; its trials are queued again
                    continue
                wid, trials = inflight.pop(ref)
                per_worker[wid] -= 1
                try:
                    outcomes = ray.get(ref)
                except (RayActorError, WorkerCrashedError) as exc:
                    self._worker_lost(wid, trials, exc, inflight, per_worker, retry, attempts, results, source)
                    continue
                except RayTaskError as exc:
                    # The batch itself raised (not the strategy, whose errors come back as
                    # failed trials): a bug that a retry would repeat. Fail its trials.
                    outcomes = [TrialOutcome(t[0], t[1], TrialStatus.FAILED, None, str(exc), 0.0, wid,
                                             extra={"lost": True}) for t in trials]
                self._record(outcomes, attempts, results, source)
        self.stats.driver_busy_s = busy + (time.perf_counter() - t0)
        self.stats.wall_s = time.perf_counter() - t_start
        return results

    def _submit(self, wid: int, trials: list[Trial], inflight: dict[Any, tuple[int, list[Trial]]],
                per_worker: dict[int, int], attempts: dict[int, int]) -> None:
        for trial in trials:
            attempts[trial[0]] = attempts.get(trial[0], 0) + 1
        ref = self.pool.workers[wid].run_batch.remote(self.spec.job_id, trials)
        inflight[ref] = (wid, trials)
        per_worker[wid] = per_worker.get(wid, 0) + 1
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(trials))

    def _dispatch(self, source: TrialSource, retry: deque[Trial], inflight: dict[Any, tuple[int, list[Trial]]],
                  per_worker: dict[int, int], attempts: dict[int, int]) -> bool:
        """One round: at most one new batch per actor with room; True if any batch was sent."""
        free = [wid for wid in list(self.pool.workers) if per_worker.get(wid, 0) < self.batches_in_flight]
        if not free:
            return False
        if not self._vector and self.spec.route is None:
            # Event jobs: measured batch sizes, asked actor by actor.
            sent = False
            for wid in free:
                n = self.batch_size()
                trials = [retry.popleft() for _ in range(min(n, len(retry)))]
                if len(trials) < n and not source.is_finished:
                    trials += source.ask(n - len(trials))
                if trials:
                    self._submit(wid, trials, inflight, per_worker, attempts)
                    sent = True
            return sent
        size = self._round_size(source)
        want = size * len(free)
        pending = [retry.popleft() for _ in range(min(want, len(retry)))]
        if len(pending) < want and not source.is_finished:
            pending += source.ask(want - len(pending))
        if not pending:
            return False
        if self._vector:
            # The round's trials shared evenly: a grid of 400 on 2 actors is 2 batches of 200.
            size = math.ceil(len(pending) / len(free))
        # len(pending) <= size * len(free): every trial asked this round is sent this round.
        route = self.spec.route
        if route is None:
            batches = [pending[i * size:(i + 1) * size] for i in range(len(free))]
        else:
            batches = self._route(route, pending, free, size)
        sent = False
        for wid, trials in zip(free, batches):
            if trials:
                self._submit(wid, trials, inflight, per_worker, attempts)
                sent = True
        return sent

    def _round_size(self, source: TrialSource) -> int:
        """Trials per batch this round.

        Event jobs: measured (:meth:`batch_size`). Vector jobs: ``min(K, ceil(R /
        actors))`` from the first batch, with ``K`` the kernel's trials per call and
        ``R`` the source's ``ask_ahead`` (trials it can usefully hand out now: the rest
        of a grid, or an adaptive sampler's look-ahead), or ``K`` when the source does
        not say. The kernel's per-trial time falls with ``K``, so sizing from measured
        trial time would keep batches small.
        """
        if not self._vector:
            return self.batch_size()
        hint = getattr(source, "ask_ahead", None)
        if hint is None:
            return self._kernel_k
        return max(1, min(self._kernel_k, math.ceil(int(hint) / max(1, len(self.pool.workers)))))

    def _route(self, route: Callable[[Any], Any], pending: list[Trial], free: list[int],
               size: int) -> list[list[Trial]]:
        """Batches of up to ``size`` trials for the ``free`` actors (in order), by routing key.

        A key stays with the actor that first ran it (sticky); a new key goes to the
        free actor with the fewest trials this round. Trials whose actor is busy, or
        beyond an actor's ``size``, fill the actors short of ``size`` (grouped by key),
        so no trial waits and no actor idles for routing's sake. Trials of a batch are
        grouped by key, in order of first appearance. ``len(pending) <= size * len(free)``.
        """
        live = self.pool.workers
        own: dict[int, list[Trial]] = {wid: [] for wid in free}
        spare: list[Trial] = []
        for trial in pending:
            key = route(trial[1])
            wid = self._owner.get(key)
            if wid is None or wid not in live:
                wid = min(free, key=lambda w: (len(own[w]), w))
                self._owner[key] = wid
            (own[wid] if wid in own else spare).append(trial)
        self.stats.routed_keys = len(self._owner)
        batches = []
        for wid in free:
            mine = _grouped(own[wid], route)
            batches.append(mine[:size])
            spare += mine[size:]
        spare = _grouped(spare, route)
        for batch in batches:
            if len(batch) < size and spare:
                take = size - len(batch)
                batch += spare[:take]
                spare = spare[take:]
        if spare:  # pragma: no cover - the caller asks at most size * len(free) trials
            raise ClusterError(f"routing left {len(spare)} trials without a batch")
        return [_grouped(b, route) for b in batches]

    def _record(self, outcomes: list[TrialOutcome], attempts: dict[int, int],
                results: dict[int, tuple[TrialOutcome, int]], source: TrialSource) -> None:
        total = 0.0
        for o in outcomes:
            total += o.duration_s
            self._finish(o, attempts, results, source)
            self.stats.trials += 1
        if outcomes:
            mean = total / len(outcomes)
            self._trial_s = mean if self._trial_s is None else 0.7 * self._trial_s + 0.3 * mean

    def _finish(self, o: TrialOutcome, attempts: dict[int, int], results: dict[int, tuple[TrialOutcome, int]],
                source: TrialSource) -> None:
        """Hand a finished trial to the source (and keep it, unless the source stores results itself)."""
        o.attempts = attempts.pop(o.number) if not self.keep_results else attempts[o.number]
        if self.keep_results:
            results[o.number] = (o, o.attempts)
        source.tell(o)
        if self.on_result is not None:
            self.on_result(o)

    def _worker_lost(self, wid: int, trials: list[Trial], exc: Exception,
                     inflight: dict[Any, Any], per_worker: dict[int, int], retry: deque[Any],
                     attempts: dict[int, int], results: dict[int, Any], source: TrialSource) -> None:
        if wid in self.pool.workers:
            self.pool.replace(wid)
            self.stats.workers_replaced += 1
        # Everything else queued on the dead actor is lost too: requeue it now rather
        # than wait for each of its refs to fail.
        for ref, (other, other_trials) in list(inflight.items()):
            if other == wid:
                inflight.pop(ref)
                per_worker[wid] -= 1
                trials = trials + other_trials
        self._requeue(trials, wid, str(exc), retry, attempts, results, source)

    def _requeue(self, trials: list[Trial], wid: int, error: str, retry: deque[Any],
                 attempts: dict[int, int], results: dict[int, Any], source: TrialSource) -> None:
        for trial in trials:
            number, params = trial[0], trial[1]
            if attempts[number] > self.max_retries:
                reason = f"worker died {attempts[number]} times while running this trial; last error: {error}"
                # "lost": failed by the infrastructure, not by the strategy; a rerun may pass.
                outcome = TrialOutcome(number, params, TrialStatus.FAILED, None, reason, 0.0, wid, extra={"lost": True})
                self._finish(outcome, attempts, results, source)
            else:
                retry.append(trial)
                self.stats.retried += 1

    def _health_check(self, inflight: dict[Any, Any], per_worker: dict[int, int], retry: deque[Any],
                      attempts: dict[int, int], results: dict[int, Any], source: TrialSource) -> None:
        # An actor can hang without dying (a stuck node): replace what does not answer a ping.
        before = set(self.pool.workers)
        try:
            self.pool.health_check()
        except GetTimeoutError:  # pragma: no cover - health_check handles its own timeouts
            return
        for wid in before - set(self.pool.workers):
            self.stats.workers_replaced += 1
            lost = [(ref, t) for ref, (w, t) in inflight.items() if w == wid]
            for ref, trials in lost:
                inflight.pop(ref)
                per_worker[wid] -= 1
                self._requeue(trials, wid, "worker stopped answering health checks", retry, attempts, results,
                              source)


def _grouped(trials: list[Trial], route: Callable[[Any], Any]) -> list[Trial]:
    """``trials`` with equal routing keys next to each other, keys in order of first appearance (stable)."""
    first: dict[Any, int] = {}
    for t in trials:
        first.setdefault(route(t[1]), len(first))
    return sorted(trials, key=lambda t: first[route(t[1])])
