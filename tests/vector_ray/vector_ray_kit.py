"""Helpers of tests/vector_ray (imported by module name: another folder's conftest would shadow a conftest import)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rustybt_ray.engine.run import run_metrics
from rustybt_ray.optimize.space import DiscreteParameter, ParameterSpace

START, END = "2016-01-01", "2018-12-31"


def sma_space() -> ParameterSpace:
    """fast 5..20 x slow 30..60: 16 points."""
    return ParameterSpace([DiscreteParameter("fast", 5, 20, 5), DiscreteParameter("slow", 30, 60, 10)])


def assert_metrics_close(got: dict[str, Any], want: dict[str, float], rtol: float = 1e-9, what: str = "") -> None:
    """Every metric of ``want`` equals ``got``'s within ``rtol`` (NaN equals NaN)."""
    assert want, "no metrics to compare"
    for name, w in want.items():
        g = got[name]
        if isinstance(w, float) and math.isnan(w):
            assert g is None or math.isnan(g), f"{what} {name}: {g} != NaN"
        else:
            assert math.isclose(g, w, rel_tol=rtol, abs_tol=1e-12), f"{what} {name}: {g} != {w}"


def check_against_event_path(result: Any, strategy: type, bundle: Any, start: Any = START, end: Any = END,
                             names: tuple[str, ...] = ("fast", "slow"), **costs: Any) -> int:
    """Each complete trial's metrics and returns equal ``run_metrics`` of its params (the event loop); the count."""
    n = 0
    for row in result.trials.iter_rows(named=True):
        assert row["status"] == "complete", row["error"]
        params = {k: row[k] for k in names}
        want, returns = run_metrics(strategy, bundle, start, end, params=params, with_returns=True, **costs)
        assert_metrics_close(row, want, what=str(params))
        got = result.returns[row["number"]]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, returns.astype(np.float32), rtol=1e-6, atol=1e-9)
        n += 1
    return n
