"""Build the embedded ``demo`` bundle shipped in ``rustybt_ray/data/demo/``.

Usage::

    python scripts/build_demo_bundle.py /path/to/mag7_daily_yf_2005_2025 [--max-bytes 1000000]

Takes the symbols below from a directory of ``SYMBOL.csv`` files, keeps the full
history if its zstd Parquet fits in ``--max-bytes``, else drops whole years from
the start until it does, and writes ``data.parquet``, ``manifest.json`` and
``DATA_NOTE.md`` into the package.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import polars as pl

from rustybt_ray.data.ingest import read_csv_dir
from rustybt_ray.data.storage import DATA_FILE, MANIFEST_FILE, Manifest, parquet_bytes, write_bundle_dir
from rustybt_ray.data.validation import validate

SYMBOLS = ("AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "SPY")
DEMO_DIR = Path(__file__).resolve().parents[1] / "rustybt_ray" / "data" / "demo"
LEVEL = 19  # slow to write, same speed to read: worth it for a file shipped in every wheel

NOTE = """# The `demo` bundle

Daily OHLCV bars for {symbols}, {first} .. {last} ({rows} bars, {size:,} bytes of zstd Parquet).

- **Source:** Yahoo Finance via `yfinance` (`yf.download(symbol, auto_adjust=True)`), as downloaded
  by the author of https://github.com/CarlosGBerreteaga/trading-ai (path `data/<SYMBOL>.csv`,
  commit `5d39eb6b3099be9a38ece580489a912c436a555e`, 2025-10-09).
- **Adjustment:** split- and dividend-adjusted OHLC (back-adjusted as of 2025-10-08); volume is
  split-adjusted share volume. Early prices are therefore below the raw quotes.
- **Calendar:** the union of the symbols' dates. META starts 2012-05-18 (IPO), TSLA 2010-06-29
  (IPO); SPY has no bar on the last date. Assets have NaN where they have no bar.
- **License / terms:** no license is stated upstream; the prices are Yahoo Finance data, whose
  terms apply. **For testing and demonstration only**, not for trading or research conclusions.
- **Rebuild:** `python scripts/build_demo_bundle.py <dir with SYMBOL.csv files>`.
"""


def build(source: Path, max_bytes: int) -> Manifest:
    """Write the demo bundle files into the package from the CSV directory ``source``."""
    pieces = [p for p in read_csv_dir(source) if p.symbol in SYMBOLS]
    missing = set(SYMBOLS) - {p.symbol for p in pieces}
    if missing:
        raise SystemExit(f"{source} lacks {', '.join(sorted(missing))}.csv")
    checked = validate(pieces)
    frame = checked.frame
    first_year = int(frame["date"].dt.year().min())  # type: ignore[arg-type]
    # Whole years are dropped from the start until the file fits the budget.
    while len(parquet_bytes(frame, compression_level=LEVEL)) > max_bytes:
        first_year += 1
        frame = frame.filter(pl.col("date").dt.year() >= first_year)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_bundle_dir(
            frame, Path(tmp) / "demo", name="demo", frequency=checked.frequency, compression_level=LEVEL
        )
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        for name in (DATA_FILE, MANIFEST_FILE):
            shutil.copyfile(Path(tmp) / "demo" / name, DEMO_DIR / name)
    (DEMO_DIR / "DATA_NOTE.md").write_text(
        NOTE.format(
            symbols=", ".join(SYMBOLS),
            first=manifest.first_bar,
            last=manifest.last_bar,
            rows=manifest.rows,
            size=manifest.data_bytes,
        ),
        encoding="utf-8",
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="directory of SYMBOL.csv files (mag7_daily_yf_2005_2025)")
    parser.add_argument("--max-bytes", type=int, default=1_000_000, help="size budget of data.parquet")
    args = parser.parse_args(argv)
    manifest = build(args.source, args.max_bytes)
    print(f"demo: {len(manifest.symbols)} symbols, {manifest.first_bar}..{manifest.last_bar}, "
          f"{manifest.rows} rows, {manifest.data_bytes:,} bytes -> {DEMO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
