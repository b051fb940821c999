"""The Ray execution layer: bundle store, persistent worker actors, and the pool that runs them.

- :class:`BundleStore` / :func:`default_store`: bundles in Ray's object store, one per version.
- :class:`BacktestWorker` / :data:`BacktestWorkerActor`: the actor that runs trial batches.
- :class:`WorkerPool` (alias :data:`PersistentWorkerPool`): N actors reused across runs.
- :class:`JobSpec`, :class:`TrialOutcome`: what the driver and the actors exchange.
"""

from rustybt_ray.cluster.bundle_store import BundleStore, default_store
from rustybt_ray.cluster.pool import PersistentWorkerPool, WorkerPool
from rustybt_ray.cluster.protocol import JobSpec, TrialOutcome
from rustybt_ray.cluster.worker import BacktestWorker, BacktestWorkerActor

__all__ = [
    "BacktestWorker",
    "BacktestWorkerActor",
    "BundleStore",
    "JobSpec",
    "PersistentWorkerPool",
    "TrialOutcome",
    "WorkerPool",
    "default_store",
]
