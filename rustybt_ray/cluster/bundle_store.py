"""``BundleStore``: the driver's pool of bundles in Ray's object store, one entry per version.

A sweep ships its bundle to workers as an ``ObjectRef``. Putting the same data twice
would store it twice (and make every node fetch it twice), so the store keys entries
by ``bundle.version`` (a SHA-256 of the data): the first ``put`` of a version calls
``ray.put``, later ones return the same ref. Changed data on disk has a new version
and so a new entry; a stale entry is never served for it.

Entries are bounded LRU by count. Evicting or releasing an entry drops the driver's
reference; Ray frees the object once no job spec or worker holds it either.

ObjectRefs die with their Ray session (``ray.shutdown()`` then ``ray.init()`` starts a
new one), so every entry belongs to the session it was put in, and the store drops
all of them as soon as it sees a different session.
"""

from __future__ import annotations

import threading
import types
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.errors import WorkerCountError


@dataclass
class _Entry:
    ref: Any
    nbytes: int


def _current_session() -> tuple[str, str] | None:
    """An id of the live Ray session of this process, or None when Ray is not initialized.

    The session name is unique per cluster start, and the job id per driver
    connection: refs of an earlier driver on the same cluster are dead too, since
    their owner (that driver) is gone.
    """
    if not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    return (ctx.get_session_name(), ctx.get_job_id())


class BundleStore:
    """Bundles in Ray's object store, put once per version, LRU-bounded, thread-safe.

    Args:
        max_entries: most bundle versions kept; the least recently used is evicted.
        enabled: when False nothing is pooled: every :meth:`put` is a fresh
            ``ray.put`` whose ref is returned and not retained, so the object lives
            only as long as the caller (and the workers it handed the ref to) keep it.
            Use it when bundles are large and seldom reused.
    """

    def __init__(self, max_entries: int = 100, enabled: bool = True) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise WorkerCountError(f"max_entries must be an int >= 1, got {max_entries!r}")
        self.max_entries = int(max_entries)
        self.enabled = bool(enabled)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._session: tuple[str, str] | None = None
        # Reentrant: stats() and refs may be called while holding it in subclasses/tests.
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.puts = 0
        self.evictions = 0

    # -- session tracking --------------------------------------------------------------

    def _sync_session(self) -> None:
        """Drop every entry put in another Ray session (their refs are invalid there)."""
        session = _current_session()
        if session != self._session:
            # Refs of a dead session must not be handed out; dropping them is all we can do.
            self._entries.clear()
            self._session = session

    # -- API -------------------------------------------------------------------------------

    def put(self, bundle: Bundle) -> Any:
        """The ``ObjectRef`` of ``bundle`` in the object store, putting it only if its version is new.

        Starts a local Ray (as ``ray.put`` does) when none is initialized.
        """
        version = bundle.version
        with self._lock:
            if not ray.is_initialized():
                # ray.put would do this implicitly; doing it first lets the entry be
                # keyed by the session it really lands in.
                ray.init()
            self._sync_session()
            if self.enabled:
                entry = self._entries.get(version)
                if entry is not None:
                    self.hits += 1
                    self._entries.move_to_end(version)
                    return entry.ref
            self.misses += 1
            # Held under the lock on purpose: two threads putting the same new version
            # must end with one object, not two.
            ref = ray.put(bundle)
            self.puts += 1
            if not self.enabled:
                return ref
            self._entries[version] = _Entry(ref, bundle.nbytes)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1
            return ref

    def get(self, version: str) -> Any | None:
        """The ref stored for ``version`` in the current session, or None (not counted as a hit)."""
        with self._lock:
            self._sync_session()
            entry = self._entries.get(version)
            return entry.ref if entry is not None else None

    def __contains__(self, version: object) -> bool:
        with self._lock:
            self._sync_session()
            return version in self._entries

    def __len__(self) -> int:
        with self._lock:
            self._sync_session()
            return len(self._entries)

    def release(self, version: str) -> bool:
        """Drop the driver's reference to ``version``; True if it was stored."""
        with self._lock:
            self._sync_session()
            return self._entries.pop(version, None) is not None

    def clear(self) -> None:
        """Drop every entry (counters are kept; they describe the store's whole life)."""
        with self._lock:
            self._entries.clear()

    @property
    def refs(self) -> Mapping[str, Any]:
        """Read-only snapshot: bundle version → ``ObjectRef``, least recently used first."""
        with self._lock:
            self._sync_session()
            return types.MappingProxyType({v: e.ref for v, e in self._entries.items()})

    #: The guide's name for :attr:`refs` (``BundleConnectionPool.bundle_connections``).
    bundle_connections = refs

    def stats(self) -> dict[str, Any]:
        """Entries, bytes held, hits, misses, puts (real ``ray.put`` calls), evictions, max_entries."""
        with self._lock:
            self._sync_session()
            return {
                "entries": len(self._entries),
                "bytes": sum(e.nbytes for e in self._entries.values()),
                "hits": self.hits,
                "misses": self.misses,
                "puts": self.puts,
                "evictions": self.evictions,
                "max_entries": self.max_entries,
                "enabled": self.enabled,
            }

    def __repr__(self) -> str:
        s = self.stats()
        return f"BundleStore({s['entries']}/{s['max_entries']} bundles, {s['bytes'] / 2**20:.1f} MiB, {s['puts']} puts)"


_default: BundleStore | None = None
_default_lock = threading.Lock()


def default_store() -> BundleStore:
    """The process-wide store that worker pools share unless given their own."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BundleStore()
        return _default
