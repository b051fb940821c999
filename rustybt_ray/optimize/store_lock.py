"""``WriterLock``: one process writes a results store at a time.

Two drivers writing one store would interleave shards and cut each other's returns, so a
writable :class:`~rustybt_ray.optimize.store.ResultStore` holds an exclusive ``flock`` on a
file in its directory. The kernel releases it when the holder exits, SIGKILL included, so a
crashed driver never leaves a stale lock behind: a resume just takes it. Within one process
the stores of one directory share the lock (a store reopened while an earlier one is still
open keeps working, as before the lock existed). Where ``fcntl`` is missing (not POSIX) there
is no lock; the rule stays documented.
"""

from __future__ import annotations

import os
from pathlib import Path

from rustybt_ray.errors import ConfigError, OutputError

__all__ = ["WriterLock"]

# Locks this process holds: resolved path -> [descriptor, holders].
_HELD: dict[str, list[int]] = {}


class WriterLock:
    """The exclusive writer lock of the lock file ``path`` (taken by :meth:`acquire`, given back by :meth:`release`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._key: str | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._key is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`ConfigError` naming the store if another process holds it."""
        if self._key is not None:
            return
        try:
            import fcntl
        except ImportError:
            return
        key = str(self.path.resolve())
        held = _HELD.get(key)
        if held is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise ConfigError(
                    f"{self.path.parent}: another process is writing this results store (only one driver may "
                    "write a store at a time); wait for that sweep to finish, or give this one another store="
                ) from None
            held = _HELD[key] = [fd, 0]
        held[1] += 1
        self._key = key

    def release(self) -> None:
        """Give the lock back (the file stays; closing its last descriptor in this process releases the flock)."""
        key, self._key = self._key, None
        held = _HELD.get(key) if key is not None else None
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _HELD[key]
            os.close(held[0])
