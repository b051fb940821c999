"""``KeyIndex``: a results store's trial keys and their rows, kept out of the driver's heap.

A resume looks up every trial's key, so the index must load fast; a sweep of millions of trials
must not grow the driver by the index either. The keys live in one sorted run of 40-byte records
(an ``S32`` digest and an ``int64`` row): in a file beside the store's shards, read by ``pread``
one block of 256 records at a time, with only the first key of each block in memory (0.125 bytes
a trial; the page cache, not the process, holds the run). Keys added since the last merge wait in
a dict; every ``merge_every`` keys they are merged into the run by one streaming pass that reads
and writes it in fixed-size chunks, so neither the index nor its merge grows with the sweep
(measured in ``benchmarks/bench_scale.py``). The file is derived data: a store rebuilds it from
its shards whenever it opens, so it needs no fsync and a crash cannot leave it wrong.
Without a path (a store opened read-only) the run is an in-memory array, same algorithm.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KeyIndex", "release_freed_memory"]

_RECORD = np.dtype([("key", "S32"), ("row", "<i8")])
_BLOCK = 256  # records a lookup reads (10 KiB): one fence key per block stays in memory
_CHUNK = 65_536  # records a merge reads at a time (2.5 MiB): bounds the merge's memory to ~4 such chunks
# Keys loaded in bulk (a store opening) are merged a million at a time: a bounded 40 MiB batch,
# and 10x fewer passes over the run than merging them every ``merge_every`` keys.
_BULK = 1_048_576


def _latest(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by key, one row per key: the latest (a key written twice, such as a rerun of a lost trial)."""
    order = np.lexsort((rows, keys))
    keys, rows = keys[order], rows[order]
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    return keys[last], rows[last]


class KeyIndex:
    """32-byte trial digests -> row numbers of the store's table (a later row wins).

    Args:
        merge_every: keys held in the dict of recent keys before they join the sorted run.
        path: the file of the sorted run (replaced at each merge); None keeps it in memory.
    """

    def __init__(self, merge_every: int = 65_536, path: str | os.PathLike[str] | None = None) -> None:
        self.merge_every = max(1, int(merge_every))
        self.path = Path(path) if path is not None else None
        self._size = 0  # records in the sorted run
        self._fence = np.empty(0, dtype="S32")  # the first key of each block of the run
        self._run = np.empty(0, dtype=_RECORD)  # the run itself when it has no file
        self._fd: int | None = None
        self._recent: dict[bytes, int] = {}
        self._batch: list[tuple[np.ndarray, np.ndarray]] = []  # bulk-loaded arrays not merged yet
        self._batched = 0

    @classmethod
    def from_arrays(cls, keys: Iterable[np.ndarray], rows: Iterable[np.ndarray], merge_every: int = 65_536,
                    path: str | os.PathLike[str] | None = None) -> KeyIndex:
        """The index of the given ``S32`` key and row arrays (a store's shards, in row order)."""
        index = cls(merge_every, path)
        for k, r in zip(keys, rows):
            index.extend(k, r)
        index.merge()
        return index

    def __len__(self) -> int:
        return self._size + len(self._recent) + self._batched

    @property
    def nbytes(self) -> int:
        """Bytes the index keeps in this process's memory (the dict of recent keys not counted)."""
        return int(self._fence.nbytes + self._run.nbytes)

    # -- lookups ----------------------------------------------------------------------

    def _read(self, lo: int, hi: int) -> np.ndarray:
        """Records ``lo:hi`` of the sorted run (read-only)."""
        if self.path is None:
            return self._run[lo:hi]
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        size = _RECORD.itemsize
        buf = os.pread(self._fd, (hi - lo) * size, lo * size)
        return np.frombuffer(buf, dtype=_RECORD)

    def find(self, digest: bytes) -> int | None:
        """The row of ``digest``, or None."""
        row = self._recent.get(digest)
        if row is not None:
            return row
        if self._batched:
            self.merge()
        j = int(np.searchsorted(self._fence, digest, side="right")) - 1
        if j < 0:
            return None
        block = self._read(j * _BLOCK, min((j + 1) * _BLOCK, self._size))
        keys = block["key"]
        i = int(np.searchsorted(keys, digest))
        # NumPy's fixed-width bytes drop trailing NUL bytes when read back one at a time.
        if i < len(keys) and keys[i] == digest.rstrip(b"\0"):
            return int(block["row"][i])
        return None

    # -- adding -------------------------------------------------------------------------

    def add(self, digest: bytes, row: int) -> bool:
        """Index ``digest`` at ``row`` (a later row wins); True when this merged the recent keys."""
        self._recent[digest] = row
        if len(self._recent) < self.merge_every:
            return False
        self.merge()
        return True

    def extend(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Index many keys at once (a shard read at open); merged every ``_BULK`` keys."""
        if len(keys):
            self._batch.append((np.asarray(keys, dtype="S32"), np.asarray(rows, dtype=np.int64)))
            self._batched += len(keys)
        if self._batched >= max(self.merge_every, _BULK):
            self._merge_batch()

    def _merge_batch(self) -> None:
        if not self._batch:
            return
        keys, rows = _latest(np.concatenate([k for k, _ in self._batch]), np.concatenate([r for _, r in self._batch]))
        self._batch, self._batched = [], 0
        self._merge_sorted(keys, rows)

    def merge(self) -> None:
        """Merge the keys added since the last merge into the sorted run."""
        self._merge_batch()  # bulk keys are older than any added one by one
        if not self._recent:
            return
        keys = np.array(list(self._recent), dtype="S32")
        rows = np.fromiter(self._recent.values(), dtype=np.int64, count=len(self._recent))
        self._recent = {}
        order = np.argsort(keys, kind="stable")
        self._merge_sorted(keys[order], rows[order])

    def _merge_sorted(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """One streaming pass: the run's chunks with the sorted, distinct new keys (new rows win)."""
        sink = _RunWriter(self.path)
        taken = 0
        for lo in range(0, self._size, _CHUNK):
            hi = min(lo + _CHUNK, self._size)
            chunk = self._read(lo, hi).copy()
            # The new keys up to this chunk's last one belong here; the last chunk takes the rest.
            end = len(keys) if hi == self._size else int(np.searchsorted(keys, chunk["key"][-1], side="right"))
            sink.write(_merge_chunk(chunk, keys[taken:end], rows[taken:end]))
            taken = end
        if taken < len(keys):  # an empty run
            sink.write(_records(keys[taken:], rows[taken:]))
        self._size, self._fence, run = sink.finish()
        if self.path is None:
            self._run = run
        else:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        """Close the run's file (reopened by the next lookup; the next open of the store rebuilds it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - an interpreter shutting down may have torn down os already
            pass


def _records(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.empty(len(keys), dtype=_RECORD)
    out["key"], out["row"] = keys, rows
    return out


def _merge_chunk(chunk: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``chunk`` (sorted records) with the sorted new keys merged in: a key already there gets the new row."""
    if not len(keys):
        return chunk
    at = np.searchsorted(chunk["key"], keys)
    same = at < len(chunk)
    same[same] = chunk["key"][at[same]] == keys[same]
    chunk["row"][at[same]] = rows[same]
    new = ~same
    return np.insert(chunk, at[new], _records(keys[new], rows[new])) if new.any() else chunk


class _RunWriter:
    """Writes a sorted run chunk by chunk (to a temporary file renamed at the end, or to memory)
    and collects the fence: the first key of every ``_BLOCK`` records."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.size = 0
        self.fence: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        self.tmp = path.with_name(f".{path.name}.tmp") if path is not None else None
        self.fh: Any = open(self.tmp, "wb") if self.tmp is not None else None

    def write(self, records: np.ndarray) -> None:
        first = -self.size % _BLOCK  # the first record of this chunk that starts a block
        self.fence.append(records["key"][first::_BLOCK].copy())
        self.size += len(records)
        if self.fh is None:
            self.parts.append(records)
        else:
            self.fh.write(np.ascontiguousarray(records).view(np.uint8))

    def finish(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(records, fence, the run when in memory); the file, if any, renamed into place."""
        fence = np.concatenate(self.fence) if self.fence else np.empty(0, dtype="S32")
        if self.fh is None:
            run = np.concatenate(self.parts) if self.parts else np.empty(0, dtype=_RECORD)
            return self.size, fence, run
        self.fh.close()
        os.replace(self.tmp, self.path)  # type: ignore[arg-type]
        return self.size, fence, np.empty(0, dtype=_RECORD)


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
