"""``ResultStore``: a sweep's trials on disk, written as results stream in, read lazily.

A sweep of a million trials does not fit the driver's memory as Python objects (15 KB a
trial, mostly per-bar returns). A store keeps them on disk instead, in a directory::

    store.json                         format, the job it belongs to, column names and types
    trials/part-000000000000.parquet   the trials table in shards, each named by its first row
    returns.f32                        every trial's per-bar returns, float32, appended

A row of the table is a trial: ``key`` (the journal key's 32-byte digest), ``number``,
one column per parameter and per metric, ``status``, ``error``, ``duration_s``,
``worker``, ``attempts``, and where its returns lie in ``returns.f32``
(``returns_offset`` in floats, -1 for none, and ``returns_len``), plus ``lost`` (failed
by the infrastructure: in the table, never reused).

**The store is also the sweep's journal.** Running the same sweep into the same store
again reuses every trial it holds (by key), so a driver that died costs only the trials
not yet committed. Rows are committed a shard at a time, every ``flush_rows`` rows or
``flush_seconds``: the returns written so far are flushed and fsynced first, then the
shard is written to a temporary file and renamed. A shard on disk is therefore whole
and every return it points to is on disk; returns past the last committed row are the
dead driver's unfinished work and are cut off when the store is opened for writing.
One driver writes a store at a time (enforced by a writer lock, see
:mod:`rustybt_ray.optimize.store_lock`: a second driver gets a :class:`ConfigError`, a dead
one leaves no stale lock); readers (:meth:`OptimizationResult.open`) see the shards committed
when they open it.

Memory: the driver holds the rows not yet committed (at most ``flush_rows``), one shard read
back for a reuse lookup, and of the key index only the keys since its last merge (at most
65,536) and one key per 256 trials: the index's sorted run is the file ``keys.index`` (40
bytes a trial; see :mod:`rustybt_ray.optimize.store_index`), derived from the shards and
rebuilt whenever the store opens. Nothing in the driver grows with the trial count but
two bitmaps (a bit a trial).
"""

from __future__ import annotations

import bisect
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from rustybt_ray.errors import ConfigError, OutputError
from rustybt_ray.files import atomic_write, ensure_directory, write_json_atomic
from rustybt_ray.optimize.store_index import KeyIndex, release_freed_memory
from rustybt_ray.optimize.store_lock import WriterLock

__all__ = ["ResultStore", "StoredReturns"]

_FORMAT = 1
_META = "store.json"
_RETURNS = "returns.f32"
_SHARDS = "trials"
#: The trials table's own columns, besides parameters and metrics (in memory and in a store).
TRIAL_COLUMNS: dict[str, pl.DataType] = {
    "number": pl.Int64(),
    "status": pl.String(),
    "error": pl.String(),
    "duration_s": pl.Float64(),
    "worker": pl.Int64(),
    "attempts": pl.Int64(),
}
_FIXED: dict[str, pl.DataType] = {
    "key": pl.Binary(),
    **TRIAL_COLUMNS,
    "lost": pl.Boolean(),
    "returns_offset": pl.Int64(),
    "returns_len": pl.Int64(),
}
#: Columns of the store that are bookkeeping, not part of the trials table a result shows.
INTERNAL_COLUMNS = ("key", "lost", "returns_offset", "returns_len")
_MERGE_EVERY = 65_536  # recent keys held in a dict before they join the sorted run
_INDEX = "keys.index"  # the key index's sorted run (derived: rebuilt from the shards at every open)
_LOCK = ".writer.lock"  # flock'ed by the one process writing the store (see store_lock)


@dataclass(frozen=True)
class StoredReturns:
    """Where one trial's returns lie in ``returns.f32``: a pointer, so a reused trial's row shares them."""

    offset: int
    length: int


def _digest(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else bytes.fromhex(key)


class ResultStore:
    """A store directory, opened to write one sweep (see the module docstring) or to read.

    Args:
        path: the directory (created when missing).
        job: the job identity every trial key shares (strategy, bundle version, dates,
            costs); a store holding another job's trials refuses to open for it.
        param_names: the parameter columns (the search space's names).
        flush_rows, flush_seconds: commit a shard after this many rows or seconds.
        readonly: open to read only: nothing is repaired or written.
    """

    #: The source journals after the objective values are added: the rows are the result.
    holds_results = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        job: Mapping[str, Any] | None = None,
        param_names: Sequence[str] | None = None,
        flush_rows: int = 16_384,
        flush_seconds: float = 5.0,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.flush_rows = max(1, int(flush_rows))
        self.flush_seconds = float(flush_seconds)
        self._meta: dict[str, Any] = {}
        self._shards: list[tuple[int, int, Path]] = []  # (first row, rows, file), by first row
        self._index = KeyIndex(_MERGE_EVERY, None if readonly else self.path / _INDEX)
        self._numbers = bytearray()  # bitmap of numbers with a row: a repeat marks duplicates
        self._pending: list[dict[str, Any]] = []
        self._returns_end = 0  # floats in returns.f32 that belong to rows (committed or pending)
        self._fh: IO[bytes] | None = None
        self._last_commit = time.monotonic()
        self._cached: tuple[int, pl.DataFrame] | None = None
        self._writer = WriterLock(self.path / _LOCK)
        self.loaded = 0
        if readonly:
            if not (self.path / _META).is_file():
                raise ConfigError(f"{self.path}: not a results store (no {_META}); was it written by a sweep with store=?")
            self._read_meta()
            self._scan_shards()
            return
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"cannot use {self.path} as a results store: it is a file, not a directory")
        if (self.path / _META).is_file():
            self._read_meta()
            if job is not None and self._meta.get("job") != _plain(job):
                raise ConfigError(
                    f"{self.path} holds the trials of another sweep (strategy, bundle, dates or costs differ): "
                    "give this sweep a directory of its own")
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(f"{self.path} is a non-empty directory that is not a results store; "
                              "give the sweep a new or empty directory")
        else:
            ensure_directory(self.path / _SHARDS)
            self._meta = {"format": _FORMAT, "job": _plain(job or {}), "param_names": list(param_names or []),
                          "schema": None, "duplicates": False}
            write_json_atomic(self.path / _META, self._meta)
        if param_names is not None and not self._meta.get("param_names"):
            self._meta["param_names"] = list(param_names)
        self._writer.acquire()  # before the repair: it cuts returns that a live writer may still be committing
        try:
            self._repair()
            self._scan_shards()
            self._load_index()
        except BaseException:
            self._writer.release()
            raise

    # -- opening ----------------------------------------------------------------------

    def _read_meta(self) -> None:
        try:
            meta = json.loads((self.path / _META).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path / _META}: unreadable results store header ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ConfigError(f"{self.path / _META}: not a results store of format {_FORMAT}")
        self._meta = meta

    def _shard_files(self) -> list[Path]:
        return sorted((self.path / _SHARDS).glob("part-*.parquet"))

    def _scan_shards(self) -> None:
        import pyarrow.parquet as pq

        self._shards = []
        for f in self._shard_files():
            self._shards.append((int(f.stem.split("-")[1]), pq.read_metadata(f).num_rows, f))
        self._shards.sort()

    def _repair(self) -> None:
        """Drop what a dead driver left half-done: temporary shards, and returns no committed row points to."""
        for tmp in (self.path / _SHARDS).glob(".part-*.tmp"):
            tmp.unlink(missing_ok=True)
        end = 0
        for f in self._shard_files():
            cols = pl.read_parquet(f, columns=["returns_offset", "returns_len"])
            if cols.height:
                end = max(end, int((cols["returns_offset"] + cols["returns_len"]).max() or 0))
        ret = self.path / _RETURNS
        try:
            size = ret.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > end * 4:
            with open(ret, "r+b") as fh:
                fh.truncate(end * 4)
                os.fsync(fh.fileno())
        self._returns_end = end

    def _load_index(self) -> None:
        """Every reusable key with its row, one shard at a time: the journal's index (resume in seconds)."""
        self._index = KeyIndex(_MERGE_EVERY, None if self.readonly else self.path / _INDEX)
        for first, n, f in self._shards:
            t = pl.read_parquet(f, columns=["key", "lost", "number"])
            ok = ~t["lost"].to_numpy()
            k = np.asarray(t["key"].to_list(), dtype="S32") if t.height else np.empty(0, dtype="S32")
            # A key journaled twice (a rerun of a lost trial): the later row wins.
            self._index.extend(k[ok], np.arange(first, first + n, dtype=np.int64)[ok])
            self._mark_numbers(t["number"].to_numpy())
        self._index.merge()
        self.loaded = len(self._index)

    def _mark_numbers(self, numbers: np.ndarray) -> None:
        """Mark numbers (loaded in bulk) in the bitmap; a number seen twice means the scan must deduplicate."""
        if not len(numbers):
            return
        idx = numbers.astype(np.int64)
        self._grow_bitmap(int(idx.max()))
        bits = np.frombuffer(self._numbers, dtype=np.uint8)
        seen = (bits[idx >> 3] >> (idx & 7)) & 1
        if seen.any() or len(np.unique(idx)) < len(idx):
            self._flag_duplicates()
        np.bitwise_or.at(bits, idx >> 3, (1 << (idx & 7)).astype(np.uint8))
        del bits  # a live view would stop the bytearray from growing

    def _mark_number(self, number: int) -> None:
        self._grow_bitmap(number)
        byte, bit = number >> 3, 1 << (number & 7)
        if self._numbers[byte] & bit:
            self._flag_duplicates()
        self._numbers[byte] |= bit

    def _grow_bitmap(self, number: int) -> None:
        need = (number >> 3) + 1
        if need > len(self._numbers):
            self._numbers.extend(bytes(max(need - len(self._numbers), len(self._numbers) // 2)))

    def _flag_duplicates(self) -> None:
        if not self._meta.get("duplicates") and not self.readonly:
            self._meta["duplicates"] = True
            write_json_atomic(self.path / _META, self._meta)
        self._meta["duplicates"] = True

    # -- the journal's interface --------------------------------------------------------

    @property
    def rows(self) -> int:
        """Rows committed and pending."""
        return self._committed() + len(self._pending)

    def _committed(self) -> int:
        return self._shards[-1][0] + self._shards[-1][1] if self._shards else 0

    def __len__(self) -> int:
        """Reusable trials held (distinct keys)."""
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return self._lookup(_digest(key)) is not None

    def _lookup(self, digest: bytes) -> int | None:
        return self._index.find(digest)

    def holds(self, number: int, key: str) -> bool:
        """True when the store has a row for trial ``number`` with this ``key`` (its last row, if several).

        A resumed sweep asks every trial again: one already stored under its own number needs
        no new row. The bitmap answers "no row" at once; a number whose row is not the one
        the key index points to (twins: two numbers, one point) is looked up in the shards,
        which the number column's statistics keep to about one row group.
        """
        if number < 0 or (number >> 3) >= len(self._numbers) or not self._numbers[number >> 3] & (1 << (number & 7)):
            return False
        digest = _digest(key)
        pending = [r["key"] for r in self._pending if r["number"] == number]
        if pending:
            return pending[-1] == digest
        files = [f for _, _, f in self._shards]
        found = pl.scan_parquet(files).filter(pl.col("number") == number).select("key").collect() if files else None
        return found is not None and found.height > 0 and found["key"][-1] == digest

    def get(self, key: str, need_returns: bool = False) -> dict[str, Any] | None:
        """The record stored for ``key`` (``returns`` a :class:`StoredReturns` pointer), or None.

        None too when returns are needed and the trial, complete, has none.
        """
        row = self._lookup(_digest(key))
        if row is None:
            return None
        rec = self._row(row)
        if need_returns and rec["status"] == "complete" and rec["returns"] is None:
            return None
        return rec

    def _row(self, row: int) -> dict[str, Any]:
        committed = self._committed()
        if row >= committed:
            r = self._pending[row - committed]
            out = dict(r)
            if out.get("returns_offset", -1) >= 0:
                out["returns"] = StoredReturns(r["returns_offset"], r["returns_len"])
            else:
                out["returns"] = None
            return out
        i = bisect.bisect_right(self._shards, (row, math.inf)) - 1
        first, _, f = self._shards[i]
        if self._cached is None or self._cached[0] != first:
            self._cached = (first, pl.read_parquet(f))
        rec = self._cached[1].row(row - first, named=True)
        params = {n: rec[n] for n in self._meta["param_names"] if rec.get(n) is not None}
        metric_names = (self._meta.get("schema") or {}).get("metrics", [])
        metrics = None
        if rec["status"] != "failed" or any(rec[n] is not None for n in metric_names):
            metrics = {n: (math.nan if rec[n] is None else rec[n]) for n in metric_names}
        off = rec["returns_offset"]
        return {"key": rec["key"].hex(), "number": rec["number"], "params": params, "metrics": metrics,
                "status": rec["status"], "error": rec["error"], "duration_s": rec["duration_s"],
                "worker": rec["worker"], "attempts": rec["attempts"],
                "returns": StoredReturns(off, rec["returns_len"]) if off >= 0 else None}

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Add finished trials: ``key``, ``number``, ``params``, ``metrics``, ``status``, ``error``,
        ``duration_s``, ``worker``, ``attempts``, ``returns`` (an array, a :class:`StoredReturns`, or None),
        and ``lost`` (failed by the infrastructure: kept in the table, never reused)."""
        if self.readonly:
            raise OutputError(f"{self.path}: opened read-only")
        for r in records:
            returns = r.get("returns")
            if isinstance(returns, StoredReturns):
                off, n = returns.offset, returns.length
            elif returns is not None:
                arr = np.ascontiguousarray(returns, dtype="<f4")
                off, n = self._returns_end, int(arr.size)
                self._write_returns(arr)
            else:
                off, n = -1, 0
            digest = _digest(r["key"])
            row = self.rows
            number = int(r["number"])
            self._pending.append({
                "key": digest, "number": number, "params": r.get("params") or {}, "metrics": r.get("metrics"),
                "status": str(r["status"]), "error": r.get("error"), "duration_s": r.get("duration_s"),
                "worker": r.get("worker"), "attempts": int(r.get("attempts", 1)), "lost": bool(r.get("lost", False)),
                "returns_offset": off, "returns_len": n,
            })
            if not r.get("lost", False) and self._index.add(digest, row):
                release_freed_memory()
            self._mark_number(number)
        if len(self._pending) >= self.flush_rows or time.monotonic() - self._last_commit >= self.flush_seconds:
            self.commit()

    def _write_returns(self, arr: np.ndarray) -> None:
        if self._fh is None:
            try:
                self._fh = open(self.path / _RETURNS, "ab")
            except OSError as exc:
                raise OutputError(f"cannot write {self.path / _RETURNS}: {exc.strerror or exc}") from None
        try:
            self._fh.write(memoryview(arr).cast("B"))
        except OSError as exc:
            raise OutputError(f"cannot write {self.path / _RETURNS}: {exc.strerror or exc}") from None
        self._returns_end += int(arr.size)

    def commit(self) -> None:
        """Make every pending row durable: returns fsynced, then one shard written and renamed into place."""
        self._last_commit = time.monotonic()
        if not self._pending:
            return
        if self._fh is not None:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as exc:
                raise OutputError(f"cannot write {self.path / _RETURNS}: {exc.strerror or exc}") from None
        first = self._committed()
        frame = self._frame(self._pending)
        target = self.path / _SHARDS / f"part-{first:012d}.parquet"
        with atomic_write(target) as fh:
            frame.write_parquet(fh, compression="zstd", statistics=True)
        self._shards.append((first, frame.height, target))
        self._pending = []

    def _frame(self, rows: list[dict[str, Any]]) -> pl.DataFrame:
        from rustybt_ray.optimize.result import param_series

        schema = self._meta.get("schema")
        params = list(self._meta.get("param_names") or sorted({k for r in rows for k in r["params"]}))
        if schema is None:
            metrics = sorted({k for r in rows if r["metrics"] for k in r["metrics"]})
        else:
            metrics = schema["metrics"]
        cols = [pl.Series(name, [r[name] for r in rows], dtype=dtype) for name, dtype in _FIXED.items()]
        for name in params:
            cols.append(param_series(name, [r["params"].get(name) for r in rows]))
        for name in metrics:
            vals = [(r["metrics"] or {}).get(name) for r in rows]
            cols.append(pl.Series(name, [None if v is None else float(v) for v in vals], dtype=pl.Float64))
        frame = pl.DataFrame(cols)
        if schema is None:
            # The first shard fixes the columns and their types; later shards are cast to them.
            self._meta["param_names"] = params
            self._meta["schema"] = {"metrics": metrics, "params": {n: str(frame[n].dtype) for n in params}}
            write_json_atomic(self.path / _META, self._meta)
        else:
            casts = {}
            for n in params:
                want = _dtype(schema["params"][n])
                if frame[n].dtype != want:
                    casts[n] = want
            if casts:
                try:
                    frame = frame.with_columns([pl.col(n).cast(d) for n, d in casts.items()])
                except pl.exceptions.PolarsError:
                    frame = frame.with_columns([pl.col(n).cast(pl.String) for n in casts])
        return frame

    def close(self) -> None:
        """Commit what is pending, close the returns file and release the writer lock."""
        if self.readonly:
            return
        try:
            self.commit()
        finally:
            fh, self._fh = self._fh, None
            if fh is not None:
                try:
                    fh.close()
                except OSError:
                    pass
            self._writer.release()

    def set_header(self, header: Mapping[str, Any]) -> None:
        """Save the result's header (objective, directions, metric names, run meta) for :meth:`OptimizationResult.open`."""
        self._meta["result"] = dict(header)
        write_json_atomic(self.path / _META, self._meta)

    # -- reading ----------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        """The store's header (``job``, ``param_names``, ``schema``, ``duplicates``)."""
        return dict(self._meta)

    @property
    def param_names(self) -> list[str]:
        """The parameter columns."""
        return list(self._meta.get("param_names") or [])

    @property
    def metric_names(self) -> list[str]:
        """The metric columns (empty before the first shard)."""
        return list((self._meta.get("schema") or {}).get("metrics", []))

    def scan(self, internal: bool = False) -> pl.LazyFrame:
        """The committed rows as a lazy frame, one row per trial number (the last written wins).

        ``internal`` keeps the bookkeeping columns (key, lost, returns pointers).
        """
        files = [f for _, _, f in self._shards]
        if not files:
            cols = {**_FIXED, **{n: pl.Float64() for n in self.metric_names}}
            lf = pl.DataFrame(schema=cols).lazy()
        else:
            lf = pl.scan_parquet(files)
        if self._meta.get("duplicates"):
            lf = lf.unique(subset="number", keep="last", maintain_order=True)
        return lf if internal else lf.drop(list(INTERNAL_COLUMNS))

    def returns_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(numbers, offsets, lengths)`` of every trial with returns, sorted by number."""
        t = (self.scan(internal=True).filter(pl.col("returns_offset") >= 0)
             .select("number", "returns_offset", "returns_len").sort("number").collect())
        return (t["number"].to_numpy(), t["returns_offset"].to_numpy(), t["returns_len"].to_numpy())

    def read_returns(self, offset: int, length: int) -> np.ndarray:
        """One trial's returns (float32)."""
        return np.fromfile(self.path / _RETURNS, dtype="<f4", count=length, offset=offset * 4)

    def iter_returns(self, numbers: np.ndarray, offsets: np.ndarray, length: int,
                     rows_per_chunk: int = 2048) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(numbers, returns[c, length])`` chunks for trials with returns of ``length`` floats, in file order.

        Reads with plain file reads into one buffer (no memory map), so the process's
        resident memory stays at one chunk whatever the store's size.
        """
        order = np.argsort(offsets, kind="stable")
        numbers, offsets = numbers[order], offsets[order]
        buf = np.empty((rows_per_chunk, length), dtype="<f4")
        with open(self.path / _RETURNS, "rb") as fh:
            for lo in range(0, len(numbers), rows_per_chunk):
                nums, offs = numbers[lo:lo + rows_per_chunk], offsets[lo:lo + rows_per_chunk]
                out = buf[:len(nums)]
                contiguous = bool(np.all(np.diff(offs) == length)) if len(offs) > 1 else True
                if contiguous:
                    fh.seek(int(offs[0]) * 4)
                    fh.readinto(memoryview(out).cast("B"))
                else:
                    for i, off in enumerate(offs.tolist()):
                        fh.seek(off * 4)
                        fh.readinto(memoryview(out[i]).cast("B"))
                yield nums, out


def _plain(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job identity as JSON would read it back, so a reopened store compares equal."""
    return json.loads(json.dumps({str(k): v for k, v in job.items()}, default=str, sort_keys=True))


def _dtype(name: str) -> pl.DataType:
    return {"Int64": pl.Int64(), "Float64": pl.Float64(), "String": pl.String(), "Boolean": pl.Boolean()}.get(
        name, pl.String())
