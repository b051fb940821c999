"""The results journal: every finished trial, appended as it arrives, keyed by what decides its result.

A trial's key is a hash of everything its numbers depend on: the strategy (its
qualified name and source code), its parameters, the bundle version (SHA-256 of the
data), the date range, capital, cost models and fill price. A sweep that finds a key
in the journal reuses the stored result instead of running the trial again, so:

- a sweep restarted after a crash runs only what had not finished;
- a grid re-run after the space was edited runs only the new points;
- an Optuna sampler that proposes a point twice gets the first answer back.

The file is JSON lines, one trial per line, appended with a single ``write`` and
flushed after every batch of results: a driver that dies loses at most the lines
being written, and a torn last line is skipped on reading. The writer repairs a torn
tail before its first append (the unfinished record is cut off, or, when it is whole
and only lacks its newline, ended), so a new record never glues onto a fragment. One
driver writes a journal at a time; readers (``rustybt-ray results`` of a running
sweep) only read, never repair. The file gets the umask's mode like any other file.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import inspect
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from rustybt_ray.errors import ConfigError, OutputError
from rustybt_ray.files import ensure_directory

_FORMAT = 1


def strategy_fingerprint(strategy: type) -> str:
    """The strategy's qualified name plus a hash of its source, so editing the code invalidates old results."""
    name = f"{strategy.__module__}.{strategy.__qualname__}"
    parts = []
    for cls in strategy.__mro__:
        if cls.__module__.split(".")[0] == "rustybt_ray" and cls.__module__ != strategy.__module__:
            break  # the engine's own classes: versioned with the package, not hashed per trial
        try:
            parts.append(inspect.getsource(cls))
        except (OSError, TypeError):  # defined in a REPL: the name is all there is
            parts.append(cls.__qualname__)
    return name + ":" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _canonical(value: Any) -> Any:
    """JSON-stable form of a parameter or date: ints stay ints, floats round-trip by repr."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return int(f) if f.is_integer() and abs(f) < 2**53 else repr(f)
    return str(value)


def trial_key(job: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """SHA-256 of the job identity (strategy, bundle version, costs, ...) and the trial's parameters.

    ``job`` holds the fields shared by a sweep's trials, including ``start``/``end``;
    a trial that overrides its dates passes them in ``job``.
    """
    blob = json.dumps(
        {"job": {k: _canonical(v) for k, v in sorted(job.items())},
         "params": {k: _canonical(v) for k, v in sorted(params.items())}},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _encode_returns(returns: Any) -> str | None:
    if returns is None:
        return None
    return base64.b64encode(np.ascontiguousarray(returns, dtype="<f4").tobytes()).decode()


def _decode_returns(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class TrialJournal:
    """Finished trials by key, optionally persisted to a JSON-lines file.

    ``TrialJournal(None)`` keeps results in memory only (a run still never repeats a
    trial it already has); ``TrialJournal(path)`` loads what the file holds and
    appends to it.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._records: dict[str, dict[str, Any]] = {}
        self._fh: IO[str] | None = None
        self.loaded = 0
        self.skipped_lines = 0
        # Only a regular file holds records: a device (/dev/null as "no journal") is read
        # as empty, never read until the end it may not have.
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        with open(self.path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i >= len(lines) - 2:  # the torn last line of a driver that died mid-write
                    self.skipped_lines += 1
                    continue
                raise ConfigError(f"{self.path}: line {i + 1} is not a journal record; is this a results journal?") from None
            if not isinstance(rec, dict) or "key" not in rec or rec.get("format") != _FORMAT:
                raise ConfigError(f"{self.path}: line {i + 1} is not a rustybt_ray journal record (format {_FORMAT})")
            self._records[rec["key"]] = rec
        self.loaded = len(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def keys(self) -> list[str]:
        """The keys of every finished trial held, in the order they were first journaled."""
        return list(self._records)

    def get(self, key: str, need_returns: bool = False) -> dict[str, Any] | None:
        """The stored record for ``key`` (with ``returns`` decoded), or None; None too when returns are needed but absent."""
        rec = self._records.get(key)
        if rec is None or (need_returns and rec.get("status") == "complete" and rec.get("returns") is None):
            return None
        out = dict(rec)
        returns = rec.get("returns")
        out["returns"] = _decode_returns(returns) if isinstance(returns, str) else returns
        if out.get("metrics"):
            out["metrics"] = {k: (math.nan if v is None else v) for k, v in out["metrics"].items()}
        return out

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Add finished trials (``key``, ``params``, ``metrics``, ``status``, ``error``, ``duration_s``, ``worker``, ``returns``)."""
        lines = []
        for r in records:
            rec = {
                "format": _FORMAT,
                "key": r["key"],
                "params": {k: _canonical_param(v) for k, v in r["params"].items()},
                "metrics": r.get("metrics"),
                "status": r["status"],
                "error": r.get("error"),
                "duration_s": r.get("duration_s"),
                "worker": r.get("worker"),
                "returns": r.get("returns"),
            }
            if self.path is not None:
                # Only a journal on disk pays for the text form (base64 returns, JSON):
                # an in-memory one keeps the arrays as they are.
                rec["returns"] = _encode_returns(rec["returns"])
                lines.append(json.dumps(rec, allow_nan=True, separators=(",", ":")))
            self._records[rec["key"]] = rec
        if self.path is None or not lines:
            return
        if self._fh is None:
            self._open_for_append()
        assert self._fh is not None
        try:
            # One write per batch, then flush: a crash tears at most the line being written.
            self._fh.write("\n".join(lines) + "\n")
            self._fh.flush()
        except OSError as exc:
            # The unwritten bytes stay in the handle's buffer: drop the handle, or close()
            # would fail on them again and hide this error behind one without a file name.
            fh, self._fh = self._fh, None
            _close_quietly(fh)
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _open_for_append(self) -> None:
        assert self.path is not None
        ensure_directory(self.path.parent)
        try:
            _repair_torn_tail(self.path)
            self._fh = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Flush to disk (fsync) and close the file."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
            try:
                os.fsync(fh.fileno())
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: not a file that can be synced (/dev/null)
                    raise
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            _close_quietly(fh)


def _close_quietly(fh: IO[str]) -> None:
    try:
        fh.close()
    except OSError:
        pass  # the error that matters was raised already


def _repair_torn_tail(path: Path) -> None:
    """End the file at a line boundary, so the next append starts a line of its own.

    Bytes after the last newline are a record a dead driver was writing: cut off when
    they are not a whole record (it reruns), ended with the missing newline when they
    are (the write stopped just before it). Either way no finished record is lost.
    """
    try:
        fh = open(path, "r+b")
    except FileNotFoundError:
        return
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Records are a few KB (base64 returns of a long run can reach a few MB): read
        # back in chunks until the last newline.
        end, tail = size, b""
        while end > 0 and b"\n" not in tail:
            start = max(0, end - (1 << 16))
            fh.seek(start)
            tail = fh.read(end - start) + tail
            end = start
        cut = tail.rfind(b"\n")  # -1 when the whole file is one torn line
        keep = end + cut + 1
        fragment = tail[cut + 1:]
        if _is_record(fragment):
            fh.seek(size)
            fh.write(b"\n")
        else:
            fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())


def _is_record(text: bytes) -> bool:
    try:
        rec = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(rec, dict) and "key" in rec and rec.get("format") == _FORMAT


def _canonical_param(value: Any) -> Any:
    """Parameters as stored: plain JSON scalars (NumPy scalars unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
