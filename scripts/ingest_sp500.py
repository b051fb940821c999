"""Ingest the S&P 500 daily set (``sp500_daily_yf_2005_2025``, ~500 symbols) as a named bundle.

Usage::

    python scripts/ingest_sp500.py /path/to/sp500_daily_yf_2005_2025 [--name sp500] [--root DIR]

The directory holds one ``SYMBOL.csv.gz`` per symbol (``date,open,high,low,close,volume``).
This is the project's own ingest path, ``ingest_bundle`` (the same as ``rustybt-ray
ingest sp500 --csv-dir DIR --lenient``), timed, with the bundle's size and the rows
dropped reported as one JSON object. The data is not shipped with the package: it is
Yahoo Finance data without a license, for internal tests and benchmarks only.

Lenient by default: the set has one row (HUBB, 2021-05-05) whose high/low do not bound
its open/close, which a strict ingest refuses; ``--strict`` refuses it.
Without a path, ``$RUSTYBT_SP500_DIR`` is used, then ``../shared/data/sp500_daily_yf_2005_2025``
next to the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rustybt_ray.data import ingest_bundle
from rustybt_ray.errors import BundleNotFoundError, RustyBTError

SET_NAME = "sp500_daily_yf_2005_2025"
ENV = "RUSTYBT_SP500_DIR"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / SET_NAME


def find_source(path: str | os.PathLike[str] | None = None) -> Path:
    """The set's directory: ``path``, else ``$RUSTYBT_SP500_DIR``, else ``../shared/data/<set>``.

    Raises :class:`BundleNotFoundError` naming where it looked.
    """
    candidates = [Path(path)] if path is not None else (
        [Path(os.environ[ENV])] if os.environ.get(ENV) else []) + [DEFAULT_DIR]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.csv.gz")):
            return candidate
    raise BundleNotFoundError(
        f"no {SET_NAME} directory of SYMBOL.csv.gz files at {', '.join(map(str, candidates))}; "
        f"pass its path, or set ${ENV}"
    )


def ingest_sp500(source: str | os.PathLike[str] | None = None, *, name: str = "sp500",
                 root: str | os.PathLike[str] | None = None, lenient: bool = True) -> dict[str, Any]:
    """Ingest the set as bundle ``name`` (under ``root``, see ``bundle_root``); returns what was done.

    The dict has ``name``, ``path``, ``symbols``, ``rows``, ``bars`` (the calendar's
    length), ``first_bar``, ``last_bar``, ``data_bytes`` (the Parquet file),
    ``source_bytes`` (the CSVs), ``ingest_s`` and ``dropped`` (one line per dropped row).
    """
    directory = find_source(source)
    t0 = time.perf_counter()
    info = ingest_bundle(name, directory, frequency="1d", lenient=lenient, root=root)
    elapsed = time.perf_counter() - t0
    return {
        "name": info.name,
        "path": str(info.path),
        "source": str(directory),
        "symbols": len(info.symbols),
        "rows": info.rows,
        "first_bar": info.first_bar,
        "last_bar": info.last_bar,
        "data_bytes": info.data_bytes,
        "source_bytes": sum(p.stat().st_size for p in directory.glob("*.csv.gz")),
        "ingest_s": round(elapsed, 3),
        "dropped": [f"{d.symbol} row {d.row}: {d.problem}" for d in info.dropped],
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: prints one JSON object, or one error line and exits 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help=f"the {SET_NAME} directory")
    parser.add_argument("--name", default="sp500", help="bundle name (default sp500)")
    parser.add_argument("--root", help="registry root (default $RUSTYBT_BUNDLE_ROOT or ~/.rustybt_ray/bundles)")
    parser.add_argument("--strict", action="store_true", help="refuse the set's one bad row instead of dropping it")
    args = parser.parse_args(argv)
    try:
        out = ingest_sp500(args.source, name=args.name, root=args.root, lenient=not args.strict)
    except RustyBTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
