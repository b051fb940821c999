"""``BacktestWorker``: a long-lived Ray actor that runs batches of trials.

An actor resolves a bundle's ``ObjectRef`` once and keeps the read-only, zero-copy
view (Ray maps NumPy buffers straight out of the node's shared object store), keeps
an :class:`ArrayCache` across trials and jobs, and never reads Parquet. A strategy
exception fails only its own trial and is reported with its traceback; it is not
retried, because it would fail again.

A :class:`~rustybt_ray.vector.VectorStrategy` job runs its trials batched through
the vectorized kernel instead, many per call (:func:`run_vector_trials`).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Any

import numpy as np
import ray

from rustybt_ray.cluster.protocol import JobSpec, Trial, TrialOutcome, TrialStatus
from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.array_cache import ArrayCache
from rustybt_ray.engine.run import TrialPruned, backtest_metrics, checkpoint_bars, run_metrics
from rustybt_ray.metrics import compute_metrics, returns_from_values
from rustybt_ray.vector.budget import trials_per_call
from rustybt_ray.vector.run import run_vector_batch, simulate_vector


class BacktestWorker:
    """Runs trials of prepared jobs; meant to be wrapped with ``ray.remote`` (see :data:`BacktestWorkerActor`)."""

    def __init__(self, worker_id: int, cache_bytes: int, cache_entries: int, enable_caching: bool = True,
                 warm_kernel: bool = False) -> None:
        self.worker_id = worker_id
        self.kernel_warm_s: float | None = None
        if warm_kernel:
            # Importing numba and loading the compiled kernel from its disk cache costs ~1 s per
            # process; done here in the background it overlaps the pool's start and the job's
            # preparation instead of delaying the first batch.
            threading.Thread(target=self._warm, name="warm-kernel", daemon=True).start()
        self.cache = ArrayCache(max_bytes=cache_bytes, max_entries=cache_entries, enabled=enable_caching)
        self._jobs: dict[str, JobSpec] = {}
        self._bundles: dict[str, Bundle] = {}
        self.trials_run = 0
        self.kernel_calls: list[int] = []  # trials per vectorized kernel call, in order (tests, benchmarks)

    def _warm(self) -> None:
        try:
            from rustybt_ray.vector.compiled import warm

            self.kernel_warm_s = warm()
        except Exception:  # noqa: BLE001 - only a head start: the first batch loads (and reports) it again
            self.kernel_warm_s = float("nan")

    def info(self) -> dict[str, Any]:
        """Process id, node id and worker id (for health checks and tests)."""
        return {
            "worker": self.worker_id,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "trials_run": self.trials_run,
            "kernel_warm_s": self.kernel_warm_s,
            "bundles": sorted(self._bundles),
            "kernel_calls": len(self.kernel_calls),
        }

    def prepare(self, spec: JobSpec) -> str:
        """Register a job and resolve its bundle (once per bundle version per actor)."""
        if spec.bundle_version not in self._bundles:
            bundle = ray.get(spec.bundle_ref[0])
            self._bundles[spec.bundle_version] = bundle
        self._jobs[spec.job_id] = spec
        return spec.job_id

    def release(self, job_id: str) -> None:
        """Forget a finished job, and its bundle when no other job uses it."""
        spec = self._jobs.pop(job_id, None)
        if spec is not None and all(j.bundle_version != spec.bundle_version for j in self._jobs.values()):
            self._bundles.pop(spec.bundle_version, None)

    def run_batch(self, job_id: str, trials: list[Trial]) -> list[TrialOutcome]:
        """Run trials of a prepared job, in order: ``(number, params)`` or ``(number, params, overrides)``."""
        spec = self._jobs[job_id]
        bundle = self._bundles[spec.bundle_version]
        if spec.vector:
            out = run_vector_trials(spec, bundle, trials, self.cache, self.worker_id, self.kernel_calls)
            self.trials_run += len(out)
            return out
        out = []
        for trial in trials:
            number, params = trial[0], trial[1]
            over = trial[2] if len(trial) > 2 else {}
            judge = _Checkpoints(number, spec.pruning) if spec.pruning is not None else None
            t0 = time.perf_counter()
            try:
                metrics, returns = run_metrics(
                    spec.strategy, bundle, over.get("start", spec.start), over.get("end", spec.end),
                    spec.capital_base, params,
                    commission=spec.commission, slippage=spec.slippage, fill_price=spec.fill_price,
                    cache=self.cache, with_returns=over.get("with_returns", spec.with_returns),
                    checkpoint=judge, checkpoint_every=spec.pruning["every"] if judge is not None else "auto",
                    fractional_shares=spec.fractional_shares,
                )
                outcome = TrialOutcome(number, params, TrialStatus.COMPLETE, metrics, None, 0.0, self.worker_id,
                                       returns.astype(np.float32) if returns is not None else None)
            except TrialPruned as stop:
                outcome = TrialOutcome(number, params, TrialStatus.PRUNED, stop.metrics, None, 0.0, self.worker_id,
                                       extra={"step": stop.step, "bars": stop.bars})
            except Exception:  # noqa: BLE001 - a strategy's bug fails its own trial only
                outcome = TrialOutcome(number, params, TrialStatus.FAILED, None, traceback.format_exc(limit=20), 0.0,
                                       self.worker_id)
            outcome.duration_s = time.perf_counter() - t0
            if judge is not None:
                judge.finish(outcome)
            out.append(outcome)
            self.trials_run += 1
        return out

    def kernel_stats(self) -> dict[str, Any]:
        """Vectorized kernel calls of this actor: how many, trials in each, the largest."""
        return {"calls": len(self.kernel_calls), "sizes": list(self.kernel_calls),
                "max_trials": max(self.kernel_calls, default=0)}

    def cache_stats(self) -> dict[str, float]:
        """This actor's ArrayCache statistics."""
        return self.cache.stats()

    def clear_cache(self) -> None:
        """Empty this actor's ArrayCache."""
        self.cache.clear()

    def checksum(self, version: str) -> float:
        """Sum of every finite value of a bundle: reads every page (memory benchmarks)."""
        values = self._bundles[version].values
        return float(np.nansum(values))

    def bundle_memory(self, version: str) -> dict[str, Any]:
        """How this actor holds a bundle: writeable flag and whether the block is a view (zero-copy test)."""
        b = self._bundles[version]
        return {
            "writeable": bool(b.values.flags.writeable),
            "owns_data": bool(b.values.flags.owndata),
            "address": int(b.values.__array_interface__["data"][0]),
            "nbytes": int(b.values.nbytes),
        }


class _Checkpoints:
    """A trial's checkpoint callback: reports the objective so far, reads the pruner's decisions.

    Decisions are pipelined: the answer to a report is read (if it has arrived) at the
    next checkpoint, so the worker never blocks on a round trip to the coordinator. A
    synchronous round trip measured 3 ms per checkpoint on 2 busy cores (the
    coordinator waits for a core), against about 1.5 ms pipelined; the price is that
    a trial stops one checkpoint after the one that condemned it.
    """

    def __init__(self, number: int, pruning: dict[str, Any]) -> None:
        self.number = number
        self.reporter = pruning["reporter"][0]
        self.objective = pruning["objective"]
        self.values: dict[int, float] = {}
        self.pending: Any = None

    def value(self, metrics: dict[str, float]) -> float:
        """The objective of a metrics dict (NaN when it cannot be computed)."""
        try:
            v = self.objective(metrics) if callable(self.objective) else metrics.get(self.objective, float("nan"))
            return float(v)
        except Exception:  # noqa: BLE001 - a partial run may lack what the objective reads
            return float("nan")

    def __call__(self, step: int, metrics: dict[str, float]) -> bool:
        value = self.value(metrics)
        self.values[step] = value
        if self.reporter is None:
            return False
        try:
            stop = False
            if self.pending is not None:
                ready, _ = ray.wait([self.pending], timeout=0)
                stop = bool(ready) and bool(ray.get(ready[0]))
            self.pending = None if stop else self.reporter.report.remote(self.number, step, value)
            return stop
        except ray.exceptions.RayError:
            # A lost coordinator costs the pruning, never the trial: run to the end.
            self.reporter = None
            return False

    def finish(self, outcome: TrialOutcome) -> None:
        """Tell the coordinator how the trial ended; attach the intermediate values to the outcome."""
        final = self.value(outcome.metrics) if outcome.status == TrialStatus.COMPLETE and outcome.metrics else None
        if self.reporter is not None:
            self.reporter.finish.remote(self.number, outcome.status, final)
        if self.values:
            outcome.extra["intermediate"] = dict(self.values)


def run_vector_trials(spec: JobSpec, bundle: Bundle, trials: list[Trial], cache: ArrayCache, worker_id: int,
                      calls: list[int] | None = None) -> list[TrialOutcome]:
    """Run a vector job's trials through the kernel, many per call; outcomes in the order of ``trials``.

    Trials are grouped by their overrides (walk-forward windows share a job, not
    dates), and each group runs in calls of ``trials_per_call`` trials (the job's
    byte budget over the group's bars). ``calls`` collects the trials of each
    successful kernel call. A call that raises is rerun one trial at a time, so only
    the trial whose strategy raised fails, with its own traceback.
    """
    groups: dict[tuple[Any, Any, bool], list[int]] = {}
    for pos, trial in enumerate(trials):
        over = trial[2] if len(trial) > 2 else {}
        key = (_hashable(over.get("start", spec.start)), _hashable(over.get("end", spec.end)),
               bool(over.get("with_returns", spec.with_returns)))
        groups.setdefault(key, []).append(pos)
    out: list[TrialOutcome | None] = [None] * len(trials)
    for members in groups.values():
        first = trials[members[0]]
        over = first[2] if len(first) > 2 else {}
        start, end = over.get("start", spec.start), over.get("end", spec.end)
        with_returns = bool(over.get("with_returns", spec.with_returns))
        k = _kernel_trials(spec, bundle, start, end)
        for lo in range(0, len(members), k):
            chunk = members[lo:lo + k]
            got = _run_chunk(spec, bundle, start, end, with_returns, [trials[p] for p in chunk], cache, worker_id,
                             calls)
            for p, o in zip(chunk, got):
                out[p] = o
    return [o for o in out if o is not None]


def _hashable(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


def _kernel_trials(spec: JobSpec, bundle: Bundle, start: Any, end: Any) -> int:
    """Trials per kernel call for the bars ``[start, end]`` of ``bundle`` under the job's byte budget."""
    total = int(bundle.calendar.shape[0])
    try:
        i0, i1 = bundle.index_range(start, end)
        bars = max(1, i1 - i0)
    except Exception:  # noqa: BLE001 - bad dates fail each trial with their own error below
        bars = max(1, total)
    return trials_per_call(bars, max(1, len(bundle.assets)), int(spec.kernel_memory_bytes),
                           history_bars=max(bars, total))


#: One trial's kernel result: metrics, per-bar returns or None, and the checkpoints'
#: metrics ``[(step, metrics so far)]`` when the job prunes (else None).
_Result = tuple[dict[str, float], Any, list[tuple[int, dict[str, float]]] | None]


def _kernel(spec: JobSpec, bundle: Bundle, start: Any, end: Any, with_returns: bool,
            params_list: list[dict[str, Any]], cache: ArrayCache) -> list[_Result]:
    """One kernel call over ``params_list``; raises what the strategy or the kernel raised."""
    kw: dict[str, Any] = {"commission": spec.commission, "slippage": spec.slippage, "fill_price": spec.fill_price,
                          "cache": cache}
    if spec.pruning is None:
        res = run_vector_batch(spec.strategy, bundle, start, end, spec.capital_base, params_list,
                               with_returns=with_returns, batch_size=len(params_list), **kw)
        return [(m, r, None) for m, r in res]
    # With pruning the per-bar equity is needed to judge the checkpoints after the fact:
    # simulate_vector gives it, and the end metrics and returns are computed from it by the
    # functions run_vector_batch uses (backtest_metrics, returns_from_values).
    capital = float(spec.capital_base)
    runs = simulate_vector(spec.strategy, bundle, start, end, spec.capital_base, params_list, **kw)
    out: list[_Result] = []
    for r in runs:
        metrics = backtest_metrics(bundle, r.value, r.gross, r.transactions, r.i0, r.i1, capital)
        returns = returns_from_values(r.value, capital) if with_returns else None
        points = []
        for step, hi in enumerate(checkpoint_bars(bundle.calendar, r.i0, r.i1, spec.pruning["every"]), start=1):
            # What the event loop judges at this checkpoint (engine.run._simulate): the
            # returns-based metrics of the bars so far, no trade statistics.
            so_far = compute_metrics(r.value[: hi - r.i0], capital, bundle.periods_per_year,
                                     gross_exposure=r.gross[: hi - r.i0])
            so_far["n_transactions"] = float("nan")
            points.append((step, so_far))
        out.append((metrics, returns, points))
    return out


def _run_chunk(spec: JobSpec, bundle: Bundle, start: Any, end: Any, with_returns: bool, chunk: list[Trial],
               cache: ArrayCache, worker_id: int, calls: list[int] | None) -> list[TrialOutcome]:
    t0 = time.perf_counter()
    try:
        results = _kernel(spec, bundle, start, end, with_returns, [t[1] for t in chunk], cache)
    except Exception:  # noqa: BLE001 - one trial's bug must not fail its batch-mates
        if len(chunk) > 1:
            return [o for t in chunk
                    for o in _run_chunk(spec, bundle, start, end, with_returns, [t], cache, worker_id, calls)]
        failed = TrialOutcome(chunk[0][0], chunk[0][1], TrialStatus.FAILED, None, traceback.format_exc(limit=20),
                              time.perf_counter() - t0, worker_id)
        if spec.pruning is not None:
            _Checkpoints(failed.number, spec.pruning).finish(failed)
        return [failed]
    if calls is not None:
        calls.append(len(chunk))
    # The call's wall shared out evenly: the scheduler's per-trial mean stays true.
    each = (time.perf_counter() - t0) / len(chunk)
    out = []
    for trial, (metrics, returns, points) in zip(chunk, results):
        o = TrialOutcome(trial[0], trial[1], TrialStatus.COMPLETE, metrics, None, each, worker_id,
                         returns.astype(np.float32) if returns is not None else None)
        if points is not None and spec.pruning is not None:
            # Vector trials always run to the end (the kernel computes every bar of every
            # trial at once, so stopping one early saves nothing); the study still learns
            # the checkpoints' values, and the coordinator the final one.
            judge = _Checkpoints(o.number, spec.pruning)
            judge.values = {step: judge.value(m) for step, m in points}
            judge.finish(o)
        out.append(o)
    return out


#: Concurrency group for liveness pings. Methods run one at a time in the default
#: group (the cache and job tables are not thread-safe), but a ping sent with
#: ``actor.info.options(concurrency_group=CONTROL_GROUP)`` runs on its own thread, so a
#: worker busy with a long batch still answers a health check instead of looking hung.
CONTROL_GROUP = "control"

#: The actor class. ``num_cpus=1``: one backtest at a time per actor, one actor per core.
BacktestWorkerActor = ray.remote(
    num_cpus=1, max_restarts=0, max_task_retries=0, concurrency_groups={CONTROL_GROUP: 1}
)(BacktestWorker)
