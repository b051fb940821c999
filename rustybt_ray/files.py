"""Atomic file writes, the one way rustybt_ray writes a result file.

Every file (Parquet results, JSON summaries, PNG plots, bundle files) is written to a
hidden temporary sibling, flushed and fsynced, then renamed over its target with
``os.replace``: a reader sees the old file or the new one, never half of one, and a
failed write leaves the target untouched. The file gets the mode any other new file
gets under the user's umask (``mkstemp`` alone would leave it ``0600``, unreadable to
colleagues on a shared cluster file system). An ``OSError`` (a full disk, a path below
a regular file, no permission) becomes an :class:`~rustybt_ray.errors.OutputError`
that names the file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from rustybt_ray.errors import OutputError

__all__ = ["atomic_write", "ensure_directory", "file_mode", "json_safe", "write_bytes_atomic", "write_json_atomic"]

_umask_lock = threading.Lock()


def file_mode() -> int:
    """The mode a new regular file gets from ``open()`` under the process's umask (``0o644`` for umask 022)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports the umask without changing it; elsewhere set-and-restore under a lock.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def ensure_directory(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and its parents; an ``OSError`` becomes an :class:`OutputError` naming it."""
    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create directory {p}: a file of that name (or of a parent's) exists") from None
    except NotADirectoryError:
        raise OutputError(f"cannot create directory {p}: one of its parents is a regular file") from None
    except OSError as exc:
        raise OutputError(f"cannot create directory {p}: {exc.strerror or exc}") from None
    return p


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[IO[bytes]]:
    """A binary file handle whose bytes replace ``path`` atomically when the block ends without error.

    ::

        with atomic_write("out/results.parquet") as fh:
            pq.write_table(table, fh)
    """
    target = Path(path).expanduser()
    ensure_directory(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_write(path, fsync=fsync) as fh:
        fh.write(data)
    return Path(path).expanduser()


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically (NaN and inf as null); returns the path."""
    text = json.dumps(json_safe(payload), indent=1, default=str)
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as None, NumPy scalars as Python ones, tuples as lists, keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
