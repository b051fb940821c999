"""``BundleConnectionPool``: the guide's bundle-pool handle, over the driver's :class:`BundleStore`.

::

    from rustybt_ray.optimization.bundle_pool import BundleConnectionPool
    pool = BundleConnectionPool.get_instance()
    len(pool.bundle_connections), pool.max_pool_size

In rustybt_ray a "connection" is a bundle version placed once in Ray's object store;
workers hold zero-copy views of it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BundleConnectionPool:
    """A handle on the bundle store used by worker pools (a singleton, as in the guide)."""

    _instance: ClassVar[BundleConnectionPool | None] = None

    @classmethod
    def get_instance(cls) -> BundleConnectionPool:
        """The process-wide handle."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @property
    def store(self) -> Any:
        """The :class:`BundleStore`: the live pool's, else the process default."""
        from rustybt_ray.cluster.bundle_store import default_store
        from rustybt_ray.optimize.session import last_pool

        pool = last_pool()
        return pool.store if pool is not None else default_store()

    @property
    def bundle_connections(self) -> dict[str, Any]:
        """Bundle version (SHA-256) → ``ObjectRef`` of each bundle in the object store."""
        return dict(self.store.bundle_connections)

    @property
    def max_pool_size(self) -> int:
        """The most bundle versions kept (``OptimizationConfig.max_bundle_pool_size``)."""
        return int(self.store.max_entries)

    def get_stats(self) -> dict[str, Any]:
        """Entries, bytes, hits, misses, puts and evictions of the store."""
        return dict(self.store.stats())
