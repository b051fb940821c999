"""Named bundles under one root directory, and the built-in ``demo`` bundle.

Layout::

    ROOT/NAME/CURRENT            # one line: the name of the live version directory
    ROOT/NAME/v<time>-<id>/      # data.parquet + manifest.json
    ROOT/NAME/.tmp-*             # an ingest in progress (or one that crashed)

Re-ingesting a name writes a new version directory next to the live one and then
switches ``CURRENT`` with ``os.replace``, which is atomic: readers see the old
bundle or the new one, never a mix, and a crash before the switch leaves the old
one live. Old versions are deleted after the switch.

ROOT is ``root=`` if given, else ``$RUSTYBT_BUNDLE_ROOT``, else ``~/.rustybt_ray/bundles``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.data.ingest import Source, read_source
from rustybt_ray.data.storage import (
    MANIFEST_FILE,
    TEMP_PREFIX,
    Manifest,
    SymbolSpan,
    fsync_dir,
    read_bundle_dir,
    read_manifest,
    write_bundle_dir,
)
from rustybt_ray.data.validation import DroppedRow, validate
from rustybt_ray.errors import BundleError, BundleNameError, BundleNotFoundError

ROOT_ENV = "RUSTYBT_BUNDLE_ROOT"
DEFAULT_ROOT = Path("~/.rustybt_ray/bundles")
DEMO_NAME = "demo"
DEMO_DIR = Path(__file__).resolve().parent / "demo"
CURRENT_FILE = "CURRENT"

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, str], Bundle] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class BundleInfo(Manifest):
    """What the manifest of a stored bundle says (every :class:`Manifest` field), plus where it lives.

    Attributes:
        name: the registered name.
        path: the directory holding ``data.parquet`` and ``manifest.json``.
        frequency: bar frequency code (``"1d"``, ``"1h"``, ``"1m"``, ...).
        symbols: symbols in column order.
        spans: first bar, last bar and bar count of each symbol.
        rows: total bars stored.
        first_bar, last_bar: the calendar's first and last bar (ISO text).
        sha256: SHA-256 of ``data.parquet``; also the loaded bundle's ``version``.
        data_bytes: size of ``data.parquet``.
        created_at: UTC time of the ingest (ISO text).
        rustybt_ray_version: the package version that wrote it.
        dropped: rows dropped by a lenient ingest (only on ``ingest_bundle``'s result).
    """

    path: Path = Path()
    dropped: tuple[DroppedRow, ...] = ()

    @classmethod
    def from_manifest(cls, manifest: Manifest, path: Path, dropped: tuple[DroppedRow, ...] = ()) -> BundleInfo:
        """Build from a manifest and the directory it came from."""
        return cls(**{f.name: getattr(manifest, f.name) for f in fields(Manifest)}, path=path, dropped=dropped)


def bundle_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The registry root: ``root``, else ``$RUSTYBT_BUNDLE_ROOT``, else ``~/.rustybt_ray/bundles``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ROOT_ENV)
    return Path(env).expanduser() if env else DEFAULT_ROOT.expanduser()


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid bundle name, else raise :class:`BundleNameError`."""
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
        raise BundleNameError(
            f"invalid bundle name {name!r}: use letters, digits, '_', '-' and '.', "
            "not starting with '.' (no path separators), e.g. 'mag7_daily'"
        )
    return name


def ingest_bundle(
    name: str,
    source: Source,
    *,
    frequency: str | None = None,
    lenient: bool = False,
    root: str | os.PathLike[str] | None = None,
    before_commit: Callable[[Path], None] | None = None,
) -> BundleInfo:
    """Validate ``source`` and store it as bundle ``name``, replacing any bundle of that name.

    Args:
        name: the bundle name (letters, digits, ``_``, ``-``, ``.``).
        source: a directory of ``SYMBOL.csv`` files, a long-format Parquet file or
            directory of them, or a polars/pandas DataFrame in long format.
        frequency: the expected bar frequency (``"1d"``, ``"1h"``, ``"5m"``, ...);
            inferred when omitted, and an error when it disagrees with the data.
        lenient: drop bad rows and report them in ``BundleInfo.dropped`` instead of
            raising on the first one. Structural problems raise either way.
        root: registry root (see :func:`bundle_root`).
        before_commit: called with the temporary directory once the files are written,
            before the new bundle goes live; raising from it aborts the ingest and
            leaves the previous bundle untouched (for tests of crash safety).

    Raises:
        BundleValidationError: the data is malformed (message names file, symbol, row).
        BundleNameError: the name is not allowed.
    """
    check_name(name)
    if name == DEMO_NAME:
        raise BundleNameError(f"{DEMO_NAME!r} is the built-in demo bundle; choose another name")
    checked = validate(read_source(source), frequency=frequency, lenient=lenient)
    home = bundle_root(root) / name
    home.mkdir(parents=True, exist_ok=True)
    version_dir = home / f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    try:
        manifest = write_bundle_dir(
            checked.frame, version_dir, name=name, frequency=checked.frequency, before_commit=before_commit
        )
    except BaseException:
        # A failed first ingest of a name leaves no empty directory behind.
        try:
            home.rmdir()
        except OSError:
            pass  # not empty: an older version or another writer is there
        raise
    _switch_current(home, version_dir.name)
    _collect_garbage(home, keep=version_dir.name)
    return BundleInfo.from_manifest(manifest, version_dir, checked.dropped)


def load_bundle(
    name_or_path: str | os.PathLike[str] | Bundle,
    *,
    root: str | os.PathLike[str] | None = None,
    cache: bool = True,
    verify: bool = True,
) -> Bundle:
    """Load a bundle by registered name, by directory path, or the built-in ``"demo"``.

    A :class:`Bundle` is returned as is. Loaded bundles are cached in-process by
    (directory, SHA-256), so loading again is nearly free and a bundle re-ingested
    on disk is read afresh; ``cache=False`` always reads the files.
    ``verify`` checks the Parquet bytes against the manifest's SHA-256.

    Raises:
        BundleNotFoundError: listing the registered names.
    """
    if isinstance(name_or_path, Bundle):
        return name_or_path
    # A bundle can be replaced between reading CURRENT and reading its files (the old
    # version is then deleted); reading CURRENT again finds the new one.
    for attempt in range(3):
        directory = _resolve(name_or_path, root)
        try:
            manifest = read_manifest(directory)
            key = (str(directory.resolve()), manifest.sha256)
            if cache:
                with _cache_lock:
                    hit = _cache.get(key)
                    if hit is not None:
                        _cache.move_to_end(key)
                        return hit
            bundle = read_bundle_dir(directory, verify=verify, manifest=manifest)
        except (BundleError, FileNotFoundError):
            if attempt == 2 or directory.exists():
                raise
            continue
        if cache:
            with _cache_lock:
                _cache[key] = bundle
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
        return bundle
    raise AssertionError("unreachable")


def bundle_info(name: str, *, root: str | os.PathLike[str] | None = None) -> BundleInfo:
    """The manifest facts of one bundle (registered name, path or ``"demo"``) without loading its data."""
    directory = _resolve(name, root)
    return BundleInfo.from_manifest(read_manifest(directory), directory)


def list_bundles(root: str | os.PathLike[str] | None = None) -> list[BundleInfo]:
    """The registered bundles, sorted by name (the built-in ``demo`` is not listed)."""
    base = bundle_root(root)
    if not base.is_dir():
        return []
    out = []
    for home in sorted(base.iterdir()):
        if home.name.startswith(".") or not (home / CURRENT_FILE).is_file():
            continue  # hidden, or an ingest that never finished
        try:
            directory = _current_dir(home)
            out.append(BundleInfo.from_manifest(read_manifest(directory), directory))
        except BundleError:
            continue  # removed or replaced while we looked
    return out


def remove_bundle(name: str, root: str | os.PathLike[str] | None = None) -> None:
    """Delete a registered bundle and every version of it."""
    check_name(name)
    home = bundle_root(root) / name
    if not (home / CURRENT_FILE).is_file():
        raise BundleNotFoundError(_not_found_message(name, root))
    # Rename first so the name disappears at once, then delete at leisure.
    resolved = home.resolve()
    trash = home.parent / f"{TEMP_PREFIX}removed-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(home, trash)
    shutil.rmtree(trash, ignore_errors=True)
    with _cache_lock:
        for key in [k for k in _cache if Path(k[0]).parent == resolved]:
            del _cache[key]


def clear_cache() -> None:
    """Forget every bundle cached by :func:`load_bundle`."""
    with _cache_lock:
        _cache.clear()


# -- internals ----------------------------------------------------------------------


def _resolve(name_or_path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> Path:
    """The version directory (with ``manifest.json``) that a name or path refers to."""
    if isinstance(name_or_path, str) and not _looks_like_path(name_or_path):
        if name_or_path == DEMO_NAME:
            return DEMO_DIR
        check_name(name_or_path)
        home = bundle_root(root) / name_or_path
        if (home / CURRENT_FILE).is_file():
            return _current_dir(home)
        if not Path(name_or_path).is_dir():
            raise BundleNotFoundError(_not_found_message(name_or_path, root))
    path = Path(name_or_path).expanduser()
    if (path / CURRENT_FILE).is_file():
        return _current_dir(path)
    if (path / MANIFEST_FILE).is_file():
        return path
    raise BundleNotFoundError(
        f"{path} is not a bundle directory (no {CURRENT_FILE} or {MANIFEST_FILE} in it); "
        "pass a registered bundle name or a directory written by ingest_bundle"
    )


def _looks_like_path(text: str) -> bool:
    return os.sep in text or (os.altsep is not None and os.altsep in text) or text.startswith("~")


def _current_dir(home: Path) -> Path:
    try:
        version = (home / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BundleNotFoundError(f"bundle {home.name!r} was removed") from None
    if not version or "/" in version or version.startswith("."):
        raise BundleError(f"{home / CURRENT_FILE} is damaged ({version!r}); re-ingest bundle {home.name!r}")
    return home / version


def _switch_current(home: Path, version: str) -> None:
    tmp = home / f"{TEMP_PREFIX}{CURRENT_FILE}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, home / CURRENT_FILE)
    fsync_dir(home)


def _collect_garbage(home: Path, keep: str) -> None:
    """Delete versions older than ``keep`` and temporaries left by dead processes."""
    for entry in home.iterdir():
        if entry.name == CURRENT_FILE or entry.name == keep:
            continue
        if entry.name.startswith(TEMP_PREFIX):
            if _writer_alive(entry.name):
                continue
        elif not (entry.name.startswith("v") and entry.name < keep):
            continue  # a newer version being committed by a concurrent ingest
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that made a temporary (``.tmp-<what>-<pid>-<id>``) still runs."""
    parts = temp_name.rsplit("-", 2)
    try:
        pid = int(parts[-2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True  # another thread of ours; failed ingests remove their own temporaries
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _not_found_message(name: str, root: str | os.PathLike[str] | None) -> str:
    names = [info.name for info in list_bundles(root)]
    registered = ", ".join(names) if names else "none"
    return (
        f"no bundle named {name!r} under {bundle_root(root)}; registered bundles: {registered} "
        f"(plus the built-in {DEMO_NAME!r}); create it with ingest_bundle({name!r}, source)"
    )
