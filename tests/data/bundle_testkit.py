"""Constants and helpers shared by the data tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

SHARED = Path("/work/shared/data")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HEADER = "date,open,high,low,close,volume"

#: Three symbols on overlapping calendars: BBB misses 2024-01-03, CCC starts late.
ROWS: dict[str, list[str]] = {
    "AAA": [
        "2024-01-02,10.0,11.0,9.5,10.5,1000",
        "2024-01-03,10.5,11.5,10.0,11.0,1100",
        "2024-01-04,11.0,12.0,10.5,11.5,1200",
        "2024-01-05,11.5,12.5,11.0,12.0,1300",
    ],
    "BBB": [
        "2024-01-02,20.0,21.0,19.5,20.5,2000",
        "2024-01-04,21.0,22.0,20.5,21.5,2200",
        "2024-01-05,21.5,22.5,21.0,22.0,2300",
    ],
    "CCC": [
        "2024-01-04,5.0,5.5,4.5,5.25,500",
        "2024-01-05,5.25,5.75,5.0,5.5,550",
        "2024-01-08,5.5,6.0,5.25,5.75,600",
    ],
}

def write_csv_dir(directory: Path, rows: dict[str, list[str]], header: str = HEADER) -> Path:
    """Write one SYMBOL.csv per entry of ``rows`` and return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for symbol, lines in rows.items():
        (directory / f"{symbol}.csv").write_text("\n".join([header, *lines]) + "\n")
    return directory
