"""``ArrayCache``: an LRU of derived arrays shared by the trials a process runs.

Trials of a sweep often need the same derived data: the 20-bar moving average of
every asset is the same array whichever ``slow`` a trial tries. A worker keeps one
cache across trials. Strategies reach it through :meth:`TradingAlgorithm.cached`.
Keys are namespaced by the bundle version, so a changed bundle never serves stale
arrays. The cache is bounded by bytes and by entry count; the least recently used
entries go first. Cached arrays are made read-only, because trials share them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from rustybt_ray.errors import ConfigError


class ArrayCache:
    """A bytes- and count-bounded LRU cache of NumPy arrays (thread-safe).

    Args:
        max_bytes: total bytes of cached arrays kept at most.
        max_entries: number of arrays kept at most.
        enabled: when False, every lookup computes and nothing is stored (misses are still counted).
    """

    def __init__(self, max_bytes: int = 2 * 1024**3, max_entries: int = 128, enabled: bool = True) -> None:
        if max_bytes < 0 or max_entries < 0:
            raise ConfigError(f"ArrayCache bounds must be >= 0, got max_bytes={max_bytes}, max_entries={max_entries}")
        self.max_bytes = int(max_bytes)
        self.max_entries = int(max_entries)
        self.enabled = enabled
        self._data: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> np.ndarray:
        """The cached array for ``key``, computing and storing it on a miss.

        An array larger than ``max_bytes`` is returned without being stored.
        """
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        value = np.asarray(compute())
        if not self.enabled:
            return value
        if value.flags.writeable:
            value = value.copy() if not value.flags.owndata else value
            value.flags.writeable = False
        size = int(value.nbytes)
        if size > self.max_bytes or self.max_entries == 0:
            return value
        with self._lock:
            if key in self._data:  # another thread computed it meanwhile
                return self._data[key]
            self._data[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._data) > self.max_entries:
                _, old = self._data.popitem(last=False)
                self._bytes -= int(old.nbytes)
                self.evictions += 1
        return value

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def stats(self) -> dict[str, float]:
        """Hits, misses, hit rate, entries, bytes, evictions and the bounds."""
        total = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / total if total else 0.0,
            "entries": len(self._data),
            "bytes": self._bytes,
            "memory_usage_mb": self._bytes / 1024**2,
            "evictions": self.evictions,
            "max_bytes": self.max_bytes,
            "max_entries": self.max_entries,
        }


_default: ArrayCache | None = None


def default_cache() -> ArrayCache:
    """The process-wide cache used by single backtests run outside a worker pool."""
    global _default
    if _default is None:
        _default = ArrayCache(max_bytes=512 * 1024**2, max_entries=128)
    return _default


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing ``window``-bar mean down each column, NaN until ``window`` valid bars, NaN-propagating.

    Row ``t`` equals ``values[t - window + 1 : t + 1].mean(axis=0)``, computed in
    O(T * N) with a cumulative sum. It only looks backwards: no look-ahead.
    """
    if window < 1:
        raise ConfigError(f"rolling_mean window must be >= 1, got {window}")
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    if v.shape[0] < window:
        return out
    nan = np.isnan(v)
    csum = np.cumsum(np.where(nan, 0.0, v), axis=0)
    cnan = np.cumsum(nan, axis=0)
    zero = np.zeros((1,) + v.shape[1:])
    csum = np.concatenate([zero, csum])
    cnan = np.concatenate([zero, cnan])
    win_sum = csum[window:] - csum[:-window]
    win_nan = cnan[window:] - cnan[:-window]
    out[window - 1 :] = np.where(win_nan > 0, np.nan, win_sum / window)
    return out
