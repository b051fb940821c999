"""``DataCache``: the guide's cache-monitoring handle, reporting the live worker pool's caches.

The guide's calls run as written::

    from rustybt_ray.optimization.caching import DataCache
    stats = DataCache.get_instance().get_stats()
    stats["hit_rate"], stats["memory_usage_mb"]

The numbers are the sum over the actors of the most recently used live
:class:`WorkerPool` (each actor keeps its own :class:`ArrayCache`); with no live
pool, the process-wide cache used by plain ``run_algorithm`` calls.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rustybt_ray.engine.array_cache import default_cache


class DataCache:
    """A handle on the array caches behind ``TradingAlgorithm.cached`` (a singleton, as in the guide)."""

    _instance: ClassVar[DataCache | None] = None

    @classmethod
    def get_instance(cls) -> DataCache:
        """The process-wide handle."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @staticmethod
    def _pool() -> Any:
        from rustybt_ray.optimize.session import last_pool

        return last_pool()

    def get_stats(self) -> dict[str, Any]:
        """Hits, misses, ``hit_rate``, ``memory_usage_mb``, bytes, evictions, entries (live pool, else local)."""
        pool = self._pool()
        if pool is not None:
            stats = dict(pool.cache_stats())
            stats["source"] = "worker_pool"
            return stats
        stats = dict(default_cache().stats())
        stats["source"] = "local"
        return stats

    def clear(self) -> None:
        """Empty the caches (the live pool's actors', and the local one)."""
        pool = self._pool()
        if pool is not None:
            pool.clear_cache()
        default_cache().clear()
