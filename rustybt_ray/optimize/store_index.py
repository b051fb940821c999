"""``KeyIndex``: a results store's trial keys and their rows, in NumPy arrays (the journal's index).

A resume looks up every trial's key, so the index must load fast and stay small at a million
trials: sorted ``S32`` digests with ``int64`` rows (40 bytes a trial) answer by binary search,
and keys added since the last merge wait in a dict (merged every ``merge_every`` keys, which
keeps the cost of appending flat instead of re-sorting on every trial).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["KeyIndex", "release_freed_memory"]


def _latest(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by key, one row per key: the latest (a key written twice, such as a rerun of a lost trial)."""
    order = np.lexsort((rows, keys))
    keys, rows = keys[order], rows[order]
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    return keys[last], rows[last]


class KeyIndex:
    """32-byte trial digests -> row numbers of the store's table.

    Args:
        merge_every: keys held in the dict of recent keys before they join the sorted arrays.
    """

    def __init__(self, merge_every: int = 65_536) -> None:
        self.merge_every = merge_every
        self._keys = np.empty(0, dtype="S32")
        self._rows = np.empty(0, dtype=np.int64)
        self._recent: dict[bytes, int] = {}

    @classmethod
    def from_arrays(cls, keys: Sequence[np.ndarray], rows: Sequence[np.ndarray], merge_every: int = 65_536) -> KeyIndex:
        """The index of the given ``S32`` key and row arrays (a store's shards, in order)."""
        index = cls(merge_every)
        if keys:
            index._keys, index._rows = _latest(np.concatenate(keys), np.concatenate(rows))
        return index

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    @property
    def nbytes(self) -> int:
        """Bytes of the sorted arrays (the dict of recent keys not counted)."""
        return int(self._keys.nbytes + self._rows.nbytes)

    def find(self, digest: bytes) -> int | None:
        """The row of ``digest``, or None."""
        row = self._recent.get(digest)
        if row is not None:
            return row
        i = int(np.searchsorted(self._keys, digest))
        # NumPy's fixed-width bytes drop trailing NUL bytes when read back one at a time.
        if i < len(self._keys) and self._keys[i] == digest.rstrip(b"\0"):
            return int(self._rows[i])
        return None

    def add(self, digest: bytes, row: int) -> bool:
        """Index ``digest`` at ``row`` (a later row wins); True when this merged the recent keys."""
        self._recent[digest] = row
        if len(self._recent) < self.merge_every:
            return False
        self.merge()
        return True

    def merge(self) -> None:
        """Move the recent keys into the sorted arrays."""
        if not self._recent:
            return
        k = np.concatenate([self._keys, np.array(list(self._recent), dtype="S32")])
        r = np.concatenate([self._rows, np.fromiter(self._recent.values(), dtype=np.int64, count=len(self._recent))])
        self._keys, self._rows = _latest(k, r)
        self._recent = {}


def release_freed_memory() -> None:
    """Hand memory freed since the last merge back to the OS (glibc only; elsewhere nothing).

    Each time the key index merges (every 65,536 trials) the driver has built and dropped Python records, polars frames and
    Parquet buffers; glibc keeps such freed pages in the heap, so RSS grew ~100 B a trial
    without any live data behind it (measured: after ``malloc_trim`` the store's RSS grows only
    by its key index). Dask's workers trim for the same reason. Costs about a millisecond.
    """
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None
