"""What the CLI tests check on a command's stderr (imported by the test modules beside it)."""

from __future__ import annotations

import re

# Ray's own start-up log lines ("2026-01-01 10:00:00,123\tINFO worker.py:1 -- ...") are not the command's.
RAY_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\t(INFO|WARNING) ")


def one_line_error(err: str, *needles: str) -> None:
    """``err`` (Ray's log lines aside) is one ``rustybt-ray: error:`` line, no traceback, naming every needle."""
    err = "".join(line for line in err.splitlines(keepends=True) if not RAY_LOG.match(line))
    assert err.count("\n") == 1 and err.startswith("rustybt-ray: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
