"""``WorkerPool``: long-lived :class:`BacktestWorker` actors reused across optimizer runs.

Starting an actor costs a process and an import of the engine (about a second), so a
pool starts its actors once and any number of jobs run on them: ``prepare(spec)``
registers a job on every actor (each resolves the bundle's ``ObjectRef`` once, as a
zero-copy view of its node's object store), ``release(job_id)`` forgets it. Actors
keep their :class:`ArrayCache` between jobs.

A dead or hung actor is replaced by a new one with a new worker id (ids are never
reused, so a late result of the old actor can never be taken for the new one's), and
the replacement is prepared with every active job before it is handed out.
"""

from __future__ import annotations

import itertools
import math
import threading
import warnings
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError, RayError, WorkerCrashedError

from rustybt_ray.cluster.bundle_store import BundleStore, _current_session, default_store
from rustybt_ray.cluster.protocol import JobSpec
from rustybt_ray.cluster.worker import CONTROL_GROUP, BacktestWorkerActor
from rustybt_ray.errors import ClusterError, WorkerCountError, WorkerPoolClosedError

if TYPE_CHECKING:
    from rustybt_ray.config import OptimizationConfig

#: What a call to an actor raises when the actor, not the call, failed.
_DEAD = (RayActorError, WorkerCrashedError)

#: Seconds an actor may take to answer a health-check ping before it is replaced.
DEFAULT_PING_TIMEOUT_S = 10.0


class WorkerPool:
    """N :class:`BacktestWorkerActor` actors spread over the cluster's nodes; a context manager.

    Args:
        n_workers: actors to start; default ``config.n_workers``, else one per cluster
            CPU (at least 1). ``-1`` also means one per CPU.
        config: an :class:`~rustybt_ray.config.OptimizationConfig` (cache bounds of each
            actor, bundle pooling); default ``OptimizationConfig()``.
        address: Ray address to connect to when Ray is not yet initialized in this
            process; an existing ``ray.init`` by the caller is respected as is.
        store: the :class:`BundleStore` to put bundles in. Default: the process-wide
            :func:`default_store` when the config keeps its defaults for bundle pooling,
            else a store of this pool's own with ``max_bundle_pool_size`` entries
            (``enable_bundle_pooling=False``: a store that pools nothing).
        n_jobs: synonym of ``n_workers`` (the guide's ``PersistentWorkerPool(n_jobs=8)``).
        ping_timeout_s: seconds a worker has to answer :meth:`health_check`.
        warm_kernel: each actor loads the compiled vectorized kernel in the background as it
            starts (a pool for ``VectorStrategy`` sweeps; ``ParallelOptimizer`` sets it).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        config: OptimizationConfig | None = None,
        *,
        address: str | None = None,
        store: BundleStore | None = None,
        n_jobs: int | None = None,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
        warm_kernel: bool = False,
    ) -> None:
        from rustybt_ray.config import OptimizationConfig  # lazy: keep cluster importable on its own

        self.config = config if config is not None else OptimizationConfig()
        if n_workers is not None and n_jobs is not None and n_workers != n_jobs:
            raise WorkerCountError(f"n_workers={n_workers} and n_jobs={n_jobs} disagree; give one")
        n = n_workers if n_workers is not None else n_jobs
        if n is None:
            n = self.config.n_workers
        if n is not None and n != -1:
            _check_worker_count(n)  # before Ray starts: a bad count must not cost a Ray start-up
        if not ray.is_initialized():
            ray.init(address=address) if address else ray.init()
        self._session = _current_session()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if n is None or n == -1:
            n = max(1, cpus)
        # One CPU per actor. More workers than CPUs on one machine (the guide's n_jobs=8 on
        # a laptop): they share the CPUs instead of waiting forever. On a multi-node
        # cluster the extra actors wait for a CPU, which is what makes an autoscaler add
        # nodes; prepare() drops those still waiting after worker_start_timeout_s.
        self.cpus_per_worker = 1.0
        if n > cpus:
            nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
            if nodes <= 1:
                # Share what is free now, not the total: CPUs another pool (or a leaked actor)
                # holds would otherwise leave the last workers waiting worker_start_timeout_s.
                free = float(ray.available_resources().get("CPU", 0.0))
                budget = min(float(max(cpus, 1)), free) if free > 0 else float(max(cpus, 1))
                # Ray counts fractional resources in units of 1e-4: round down so n shares fit.
                self.cpus_per_worker = max(math.floor(budget / n * 10_000) / 10_000, 0.0001)
                warnings.warn(f"{n} workers requested but the cluster has {cpus} CPUs; the workers share them "
                              f"({self.cpus_per_worker:.2f} CPU each), which adds no speed", RuntimeWarning,
                              stacklevel=2)
            else:
                warnings.warn(f"{n} workers requested but the cluster's {nodes} nodes have {cpus} CPUs now: "
                              f"{n - cpus} wait for nodes to join (an autoscaler) for up to "
                              f"{self.config.worker_start_timeout_s:g} s (worker_start_timeout_s)", RuntimeWarning,
                              stacklevel=2)
        self.store = store if store is not None else self._store_for(self.config)
        self.ping_timeout_s = float(ping_timeout_s)
        self.warm_kernel = bool(warm_kernel)
        self.workers: dict[int, Any] = {}
        self._specs: dict[str, JobSpec] = {}
        self._ids = itertools.count()
        # One lock for the worker table: a health check and a scheduler's replace() may race.
        self._lock = threading.RLock()
        self._closed = False
        for _ in range(n):
            self._start_worker()

    @staticmethod
    def _store_for(config: OptimizationConfig) -> BundleStore:
        shared = default_store()
        if config.enable_bundle_pooling and config.max_bundle_pool_size == shared.max_entries and shared.enabled:
            return shared
        return BundleStore(max_entries=config.max_bundle_pool_size, enabled=config.enable_bundle_pooling)

    def _start_worker(self) -> int:
        wid = next(self._ids)
        # SPREAD: one actor per node before doubling up, so a sweep uses every node.
        actor = BacktestWorkerActor.options(scheduling_strategy="SPREAD", num_cpus=self.cpus_per_worker).remote(
            wid, self.config.cache_size_bytes, self.config.lru_maxsize, self.config.enable_caching,
            self.warm_kernel,
        )
        self.workers[wid] = actor
        return wid

    def _check_open(self) -> None:
        if self._closed:
            raise WorkerPoolClosedError("this WorkerPool is closed")
        if _current_session() != self._session:
            # Its actors died with the Ray session they were started in.
            raise WorkerPoolClosedError("Ray was shut down or restarted since this WorkerPool started; create a new one")

    # -- jobs ----------------------------------------------------------------------------

    def prepare(self, spec: JobSpec) -> None:
        """Register ``spec`` on every worker and wait; workers that die meanwhile are replaced.

        The spec is remembered until :meth:`release`, so replacements get it too.
        """
        self._check_open()
        with self._lock:
            self._specs[spec.job_id] = spec
            pending = {wid: actor.prepare.remote(spec) for wid, actor in self.workers.items()}
        _, waiting = ray.wait(list(pending.values()), num_returns=len(pending),
                              timeout=self.config.worker_start_timeout_s)
        if waiting:
            self._drop_unplaced([wid for wid, ref in pending.items() if ref in set(waiting)])
        for wid, ref in pending.items():
            if wid not in self.workers:
                continue
            try:
                ray.get(ref)
            except _DEAD:
                # A RayTaskError (prepare itself raised, e.g. the strategy does not
                # unpickle) propagates: replacing the actor would not help.
                with self._lock:
                    if wid in self.workers:
                        self.replace(wid)

    def _drop_unplaced(self, wids: list[int]) -> None:
        """Kill workers still waiting for a CPU: the sweep goes on with the ones that started."""
        with self._lock:
            for wid in wids:
                actor = self.workers.pop(wid, None)
                if actor is not None:
                    _kill(actor)
            left = len(self.workers)
        if not left:
            raise ClusterError(f"no worker could start within {self.config.worker_start_timeout_s:g} s: "
                               "the cluster has no free CPU (raise worker_start_timeout_s to wait for nodes)")
        warnings.warn(f"{len(wids)} worker(s) found no CPU within {self.config.worker_start_timeout_s:g} s "
                      f"(worker_start_timeout_s); the pool goes on with {left}", RuntimeWarning, stacklevel=3)

    def release(self, job_id: str) -> None:
        """Forget a job on every worker (dead workers are skipped; the health check replaces them)."""
        with self._lock:
            self._specs.pop(job_id, None)
            refs = [actor.release.remote(job_id) for actor in self.workers.values()]
        for ref in refs:
            try:
                ray.get(ref)
            except RayError:
                pass  # a dead actor has forgotten the job anyway

    @property
    def active_jobs(self) -> list[str]:
        """Ids of the jobs prepared and not yet released."""
        return list(self._specs)

    # -- health ----------------------------------------------------------------------------

    def replace(self, worker_id: int) -> int:
        """Kill worker ``worker_id`` if still around, start a new one prepared with every active job.

        Returns the new worker id. Raises if the new worker cannot be prepared.
        """
        self._check_open()
        with self._lock:
            # close() may have run since the check above: a worker started now would leak.
            self._check_open()
            old = self.workers.pop(worker_id, None)
            if old is not None:
                _kill(old)
            wid = self._start_worker()
            actor = self.workers[wid]
            specs = list(self._specs.values())
        if specs:
            ray.get([actor.prepare.remote(s) for s in specs])
        return wid

    def health_check(self, timeout_s: float | None = None) -> list[int]:
        """Ping every worker; replace the dead and those silent for ``timeout_s``. Returns replaced ids.

        Pings go to the actors' control concurrency group, so a worker busy with a long
        batch still answers.
        """
        self._check_open()
        timeout = self.ping_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if not self.workers:
                return []
            pings = {actor.info.options(concurrency_group=CONTROL_GROUP).remote(): wid
                     for wid, actor in self.workers.items()}
        ready, _ = ray.wait(list(pings), num_returns=len(pings), timeout=timeout)
        ok = set()
        for ref in ready:
            try:
                ray.get(ref)
                ok.add(pings[ref])
            except RayError:
                pass
        bad = [wid for wid in pings.values() if wid not in ok]
        for wid in bad:
            with self._lock:
                if wid in self.workers:  # a concurrent replace() may have got there first
                    self.replace(wid)
        return bad

    # -- introspection -------------------------------------------------------------------

    def info(self) -> list[dict[str, Any]]:
        """``info()`` of every live worker: worker id, pid, node_id, trials_run, bundles."""
        with self._lock:
            refs = [a.info.options(concurrency_group=CONTROL_GROUP).remote() for a in self.workers.values()]
        return ray.get(refs)

    def cache_stats(self) -> dict[str, Any]:
        """ArrayCache statistics summed over live workers, with each worker's own in ``per_worker``."""
        with self._lock:
            items = list(self.workers.items())
        per = []
        for wid, ref in [(wid, a.cache_stats.remote()) for wid, a in items]:
            try:
                per.append({"worker": wid, **ray.get(ref)})
            except RayError:
                pass  # a dead worker's cache is gone; the health check will replace it
        hits = sum(p["hits"] for p in per)
        misses = sum(p["misses"] for p in per)
        total_bytes = sum(p["bytes"] for p in per)
        return {
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "bytes": total_bytes,
            "memory_usage_mb": total_bytes / 1024**2,
            "evictions": sum(p["evictions"] for p in per),
            "entries": sum(p["entries"] for p in per),
            "per_worker": per,
        }

    def clear_cache(self) -> None:
        """Empty every live worker's ArrayCache."""
        with self._lock:
            refs = [a.clear_cache.remote() for a in self.workers.values()]
        for ref in refs:
            try:
                ray.get(ref)
            except RayError:
                pass

    def __len__(self) -> int:
        return len(self.workers)

    # -- lifetime ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Kill every actor. Idempotent; the pool cannot be used afterwards. Ray itself stays up."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            actors = list(self.workers.values())
            self.workers.clear()
            self._specs.clear()
        # After a Ray restart the old actors died with their session; killing them would
        # talk to a cluster that is gone.
        if _current_session() == self._session:
            for actor in actors:
                _kill(actor)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Interpreter shutdown may have torn down ray or our attributes already.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.workers)} workers, {len(self._specs)} jobs"
        return f"WorkerPool({state})"


#: The guide's name: ``PersistentWorkerPool(n_jobs=8)``.
PersistentWorkerPool = WorkerPool


def _check_worker_count(n: Any) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise WorkerCountError(f"n_workers must be a positive int (or -1 / None for all CPUs), got {n!r}")


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already dead, or its session is gone
        pass
