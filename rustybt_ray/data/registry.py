"""Named bundles under one root directory, and the built-in ``demo`` bundle.

Layout::

    ROOT/NAME/CURRENT            # one line: the name of the live version directory
    ROOT/NAME/v<time>-<id>/      # data.parquet + manifest.json
    ROOT/NAME/.tmp-*             # an ingest in progress (or one that crashed)
    ROOT/NAME/.CURRENT.*.tmp     # the next CURRENT being written (rustybt_ray.files)

Re-ingesting a name writes a new version directory next to the live one and then
switches ``CURRENT`` with ``os.replace``, which is atomic: readers see the old
bundle or the new one, never a mix, and a crash before the switch leaves the old
one live. Old versions are deleted after the switch. A bundle whose CURRENT or
manifest is damaged is still listed, with the problem, so that it can be re-ingested
or removed.

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
    fsync_dir,
    read_bundle_dir,
    read_manifest,
    write_bundle_dir,
)
from rustybt_ray.data.validation import DroppedRow, validate
from rustybt_ray.errors import BundleError, BundleNameError, BundleNotFoundError, OutputError
from rustybt_ray.files import ensure_directory, write_bytes_atomic

ROOT_ENV = "RUSTYBT_BUNDLE_ROOT"
DEFAULT_ROOT = Path("~/.rustybt_ray/bundles")
DEMO_NAME = "demo"
DEMO_DIR = Path(__file__).resolve().parent / "demo"
CURRENT_FILE = "CURRENT"

#: Longest bundle name: well under the 255 bytes most file systems allow in one
#: path component, leaving room for the hidden temporaries named after it.
MAX_NAME_LENGTH = 200
#: A CURRENT temporary this old was left by a dead writer (its name has no pid).
_STALE_TEMP_SECONDS = 3600.0

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
        problem: ``None`` for a sound bundle. For a damaged one (listed by
            :func:`list_bundles`), what is wrong, and the manifest fields are empty
            (``frequency`` ``""``, no symbols, 0 rows): re-ingest it or remove it.
    """

    path: Path = Path()
    dropped: tuple[DroppedRow, ...] = ()
    problem: str | None = None

    @property
    def damaged(self) -> bool:
        """Whether the bundle cannot be loaded (its ``CURRENT`` pointer or manifest is damaged); see ``problem``."""
        return self.problem is not None

    @classmethod
    def from_manifest(cls, manifest: Manifest, path: Path, dropped: tuple[DroppedRow, ...] = ()) -> BundleInfo:
        """Build from a manifest and the directory it came from."""
        return cls(**{f.name: getattr(manifest, f.name) for f in fields(Manifest)}, path=path, dropped=dropped)

    @classmethod
    def damaged_entry(cls, name: str, path: Path, problem: str) -> BundleInfo:
        """The listing entry of a bundle whose manifest cannot be read: its name, where it is, and why."""
        return cls(
            schema_version=0, name=name, frequency="", symbols=(), spans=(), rows=0, first_bar="", last_bar="",
            sha256="", data_bytes=0, created_at="", rustybt_ray_version="", path=path, problem=problem,
        )


def bundle_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The registry root: ``root``, else ``$RUSTYBT_BUNDLE_ROOT``, else ``~/.rustybt_ray/bundles``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ROOT_ENV)
    return Path(env).expanduser() if env else DEFAULT_ROOT.expanduser()


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid bundle name, else raise :class:`BundleNameError`.

    A name is 1 to :data:`MAX_NAME_LENGTH` (200) letters, digits, ``_``, ``-`` and ``.``,
    not starting with ``.``. It is checked before the disk is touched.
    """
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
        raise BundleNameError(
            f"invalid bundle name {name!r}: use letters, digits, '_', '-' and '.', "
            "not starting with '.' (no path separators), e.g. 'mag7_daily'"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise BundleNameError(
            f"invalid bundle name {name[:20]}... ({len(name)} characters): "
            f"a bundle name has at most {MAX_NAME_LENGTH} characters"
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
        BundleNameError: the name is not allowed (see :func:`check_name`).
        OutputError: the bundle cannot be written (a full disk, the root below a regular
            file, no permission); the message names the path, and nothing is left behind.
    """
    check_name(name)
    if name == DEMO_NAME:
        raise BundleNameError(f"{DEMO_NAME!r} is the built-in demo bundle; choose another name")
    checked = validate(read_source(source), frequency=frequency, lenient=lenient)
    home = bundle_root(root) / name
    ensure_directory(home)
    version_dir = home / f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    try:
        manifest = write_bundle_dir(
            checked.frame, version_dir, name=name, frequency=checked.frequency, before_commit=before_commit
        )
        try:
            _switch_current(home, version_dir.name)
        except BaseException:
            shutil.rmtree(version_dir, ignore_errors=True)  # never published: no reader can have it
            raise
    except BaseException:
        # A failed first ingest of a name leaves no empty directory behind.
        try:
            home.rmdir()
        except OSError:
            pass  # not empty: an older version or another writer is there
        raise
    try:
        _collect_garbage(home, keep=version_dir.name)
    except OSError:
        pass  # the new bundle is live; what is left is collected by the next ingest
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
        BundleNameError: a name (not a path) that is not allowed (see :func:`check_name`).
        BundleError: the bundle is damaged or cannot be read; the message names the file.
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
    """The registered bundles, sorted by name (the built-in ``demo`` is not listed).

    A bundle whose ``CURRENT`` pointer or manifest is damaged is listed too, with
    ``damaged`` true and ``problem`` saying what is wrong; ``[b for b in list_bundles()
    if not b.damaged]`` are the loadable ones.

    Raises:
        BundleError: the root exists but cannot be read (no permission); names it.
    """
    base = bundle_root(root)
    try:
        if not base.is_dir():
            return []
        homes = sorted(base.iterdir())
    except OSError as exc:
        raise BundleError(f"cannot list bundles under {base}: {exc.strerror or exc}") from None
    out = []
    for home in homes:
        if home.name.startswith(".") or not _is_file(home / CURRENT_FILE):
            continue  # hidden, or an ingest that never finished
        entry = _list_entry(home)
        if entry is not None:
            out.append(entry)
    return out


def remove_bundle(name: str, root: str | os.PathLike[str] | None = None) -> None:
    """Delete a registered bundle and every version of it (a damaged one too).

    Raises:
        BundleNameError: the name is not allowed (see :func:`check_name`).
        BundleNotFoundError: no bundle of that name is registered.
        OutputError: the bundle's directory cannot be renamed away (no permission).
    """
    check_name(name)
    home = bundle_root(root) / name
    if not _is_file(home / CURRENT_FILE):
        raise BundleNotFoundError(_not_found_message(name, root))
    # Rename first so the name disappears at once, then delete at leisure.
    resolved = home.resolve()
    trash = home.parent / f"{TEMP_PREFIX}removed-{name[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(home, trash)
    except FileNotFoundError:
        raise BundleNotFoundError(_not_found_message(name, root)) from None
    except OSError as exc:
        raise OutputError(f"cannot remove bundle {name!r} at {home}: {exc.strerror or exc}") from None
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
        if _is_file(home / CURRENT_FILE):
            return _current_dir(home)
        if not _is_dir(Path(name_or_path)):
            raise BundleNotFoundError(_not_found_message(name_or_path, root))
    path = Path(name_or_path).expanduser()
    if _is_file(path / CURRENT_FILE):
        return _current_dir(path)
    if _is_file(path / MANIFEST_FILE):
        return path
    raise BundleNotFoundError(
        f"{path} is not a bundle directory (no {CURRENT_FILE} or {MANIFEST_FILE} in it); "
        "pass a registered bundle name or a directory written by ingest_bundle"
    )


def _is_file(path: Path) -> bool:
    # Path.is_file raises on some errors (a name too long for the file system); for a
    # lookup, a path that cannot be there is a path that is not there.
    try:
        return path.is_file()
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _list_entry(home: Path) -> BundleInfo | None:
    """``home``'s listing entry: sound, damaged, or ``None`` when it was removed while we looked."""
    problem = ""
    for _ in range(3):
        try:
            directory = _current_dir(home)
        except BundleNotFoundError:
            return None
        except BundleError as exc:
            return BundleInfo.damaged_entry(home.name, home, str(exc))
        try:
            return BundleInfo.from_manifest(read_manifest(directory), directory)
        except BundleError as exc:
            problem = str(exc)
        # A bundle re-ingested while we looked deletes the version we read; CURRENT then
        # names the new one. Only a CURRENT that still names the unreadable one is damage.
        try:
            if _current_dir(home) == directory:
                return BundleInfo.damaged_entry(home.name, directory, problem)
        except BundleNotFoundError:
            return None
        except BundleError as exc:
            return BundleInfo.damaged_entry(home.name, home, str(exc))
    return BundleInfo.damaged_entry(home.name, home, problem)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or (os.altsep is not None and os.altsep in text) or text.startswith("~")


def _current_dir(home: Path) -> Path:
    try:
        version = (home / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BundleNotFoundError(f"bundle {home.name!r} was removed") from None
    except UnicodeDecodeError:
        raise BundleError(f"{home / CURRENT_FILE} is damaged (not text); re-ingest bundle {home.name!r}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {home / CURRENT_FILE}: {exc.strerror or exc}") from None
    if not version or "/" in version or version.startswith("."):
        raise BundleError(f"{home / CURRENT_FILE} is damaged ({version!r}); re-ingest bundle {home.name!r}")
    return home / version


def _switch_current(home: Path, version: str) -> None:
    write_bytes_atomic(home / CURRENT_FILE, (version + "\n").encode("utf-8"))
    fsync_dir(home)


def _collect_garbage(home: Path, keep: str) -> None:
    """Delete versions older than ``keep`` and temporaries left by dead processes."""
    for entry in home.iterdir():
        if entry.name == CURRENT_FILE or entry.name == keep:
            continue
        if entry.name.startswith(f".{CURRENT_FILE}."):
            if not _stale(entry):
                continue  # another ingest is switching CURRENT right now
        elif entry.name.startswith(TEMP_PREFIX):
            if _writer_alive(entry.name):
                continue
        elif not (entry.name.startswith("v") and entry.name < keep):
            continue  # a newer version being committed by a concurrent ingest
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _stale(entry: Path) -> bool:
    try:
        return time.time() - entry.stat().st_mtime > _STALE_TEMP_SECONDS
    except OSError:
        return False


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
