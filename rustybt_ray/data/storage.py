"""The on-disk bundle format: ``data.parquet`` plus ``manifest.json`` in one directory.

``data.parquet`` holds the validated long frame sorted by symbol then date
(zstd; floats byte-stream-split, which groups the exponent bytes of prices
together and shrinks them markedly under zstd). ``manifest.json`` records the
facts a reader wants without opening the data, and the SHA-256 of the Parquet
bytes, which is also the bundle's ``version``.

A directory is written to a hidden temporary sibling, fsynced, then renamed into
place, so a reader sees a complete bundle or none. Its files are written with
:mod:`rustybt_ray.files` (the umask's mode, an ``OSError`` as an ``OutputError``
naming the file).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.data.ingest import LONG_COLUMNS, VALUE_COLUMNS
from rustybt_ray.errors import BundleError, BundleNotFoundError, OutputError
from rustybt_ray.files import ensure_directory, write_bytes_atomic

SCHEMA_VERSION = 1
DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
#: Prefix of in-progress directories; readers and listings skip dot-names.
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class SymbolSpan:
    """One symbol's first and last bar (ISO text) and its number of bars."""

    symbol: str
    first_bar: str
    last_bar: str
    rows: int


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``."""

    schema_version: int
    name: str
    frequency: str
    symbols: tuple[str, ...]
    spans: tuple[SymbolSpan, ...]
    rows: int
    first_bar: str
    last_bar: str
    sha256: str
    data_bytes: int
    created_at: str
    rustybt_ray_version: str

    def to_json(self) -> str:
        """The manifest as pretty JSON text (only the manifest's own fields, also on subclasses)."""
        data = {f.name: getattr(self, f.name) for f in fields(Manifest)}
        data["symbols"] = list(self.symbols)
        data["spans"] = {
            s.symbol: {"first_bar": s.first_bar, "last_bar": s.last_bar, "rows": s.rows} for s in self.spans
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "manifest.json") -> Manifest:
        """Parse manifest text; raises :class:`BundleError` naming ``source`` when it is malformed."""
        try:
            data = json.loads(text)
            if data.get("schema_version") != SCHEMA_VERSION:
                raise BundleError(
                    f"{source}: bundle schema version {data.get('schema_version')!r} is not supported "
                    f"(this rustybt_ray reads version {SCHEMA_VERSION}); re-ingest the bundle"
                )
            spans = tuple(SymbolSpan(sym, **fields) for sym, fields in data["spans"].items())
            return cls(**{**data, "symbols": tuple(data["symbols"]), "spans": spans})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: JSON that is no object
            raise BundleError(f"{source} is not a valid bundle manifest ({exc}); re-ingest the bundle") from exc


def parquet_bytes(frame: pl.DataFrame, *, compression_level: int = 9) -> bytes:
    """Serialize a validated long frame (sorted by symbol, date) to Parquet bytes."""
    # pyarrow is imported here, not at module level: loading reads with polars alone,
    # and importing pyarrow.parquet costs more than reading a small bundle.
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("date", pa.timestamp("ns")), ("symbol", pa.string())] + [(c, pa.float64()) for c in VALUE_COLUMNS]
    )
    table = frame.select(LONG_COLUMNS).to_arrow().cast(schema)
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=compression_level,
        use_dictionary=["symbol"],
        use_byte_stream_split=list(VALUE_COLUMNS),
        column_encoding={"date": "DELTA_BINARY_PACKED"},
        # One row group: bundles are read whole, and one group compresses best.
        row_group_size=max(frame.height, 1),
        write_statistics=False,
    )
    return sink.getvalue()


def build_manifest(frame: pl.DataFrame, *, name: str, frequency: str, data: bytes) -> Manifest:
    """The manifest for a validated long frame and its Parquet bytes."""
    fmt = "%Y-%m-%d" if frequency == "1d" else "%Y-%m-%dT%H:%M:%S"
    spans_frame = (
        frame.group_by("symbol")
        .agg(
            pl.col("date").min().dt.to_string(fmt).alias("first_bar"),
            pl.col("date").max().dt.to_string(fmt).alias("last_bar"),
            pl.len().alias("rows"),
        )
        .sort("symbol")
    )
    spans = tuple(SymbolSpan(**r) for r in spans_frame.iter_rows(named=True))
    return Manifest(
        schema_version=SCHEMA_VERSION,
        name=name,
        frequency=frequency,
        symbols=tuple(s.symbol for s in spans),
        spans=spans,
        rows=frame.height,
        first_bar=min(s.first_bar for s in spans),
        last_bar=max(s.last_bar for s in spans),
        sha256=hashlib.sha256(data).hexdigest(),
        data_bytes=len(data),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        rustybt_ray_version=_package_version(),
    )


def write_bundle_dir(
    frame: pl.DataFrame,
    dest: str | os.PathLike[str],
    *,
    name: str,
    frequency: str,
    compression_level: int = 9,
    before_commit: Callable[[Path], None] | None = None,
) -> Manifest:
    """Atomically create the bundle directory ``dest`` (which must not exist yet).

    The files are written and fsynced in a hidden sibling directory which is then
    renamed to ``dest``. ``before_commit`` is called with that temporary directory
    after the files are written and before the rename; an exception from it (or a
    crash at any point) leaves no ``dest`` behind.

    Raises:
        OutputError: a directory or file cannot be written (a full disk, a parent that
            is a regular file, no permission); the message names it.
    """
    dest = Path(dest)
    if dest.exists():
        raise BundleError(f"{dest} already exists; bundle directories are never overwritten in place")
    ensure_directory(dest.parent)
    tmp = dest.parent / f"{TEMP_PREFIX}{dest.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot create directory {tmp}: {exc.strerror or exc}") from None
    try:
        data = parquet_bytes(frame, compression_level=compression_level)
        manifest = build_manifest(frame, name=name, frequency=frequency, data=data)
        write_bytes_atomic(tmp / DATA_FILE, data)
        write_bytes_atomic(tmp / MANIFEST_FILE, manifest.to_json().encode())
        fsync_dir(tmp)
        if before_commit is not None:
            before_commit(tmp)
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            raise OutputError(f"cannot publish bundle directory {dest}: {exc.strerror or exc}") from None
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read ``manifest.json`` of a bundle directory."""
    path = Path(directory) / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleNotFoundError(f"{directory} is not a bundle directory: it has no {MANIFEST_FILE}") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path} is not a valid bundle manifest (not UTF-8 text); re-ingest the bundle") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    return Manifest.from_json(text, str(path))


def read_bundle_dir(
    directory: str | os.PathLike[str], *, verify: bool = True, manifest: Manifest | None = None
) -> Bundle:
    """Load a bundle directory into a :class:`Bundle` whose ``version`` is the data's SHA-256.

    With ``verify`` (the default) the Parquet bytes are hashed and compared with the
    manifest, which catches a truncated or altered file for about 1 ms per MB.
    """
    directory = Path(directory)
    manifest = manifest if manifest is not None else read_manifest(directory)
    path = directory / DATA_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {manifest.name!r} at {directory} has no {DATA_FILE}; re-ingest it") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest.sha256:
            raise BundleError(
                f"{path} is damaged: its SHA-256 is {digest[:12]}... but the manifest says "
                f"{manifest.sha256[:12]}...; re-ingest bundle {manifest.name!r}"
            )
    frame = pl.read_parquet(io.BytesIO(data))
    return Bundle.from_long_frame(frame, manifest.name, manifest.frequency, version=manifest.sha256)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (new names, renames) to disk where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; renames are durable enough there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _package_version() -> str:
    # Imported lazily: the package __init__ may import this module.
    import rustybt_ray

    return str(getattr(rustybt_ray, "__version__", "unknown"))
