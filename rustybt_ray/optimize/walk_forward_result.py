"""What a walk-forward analysis returns: :class:`WalkForwardResult`, and its summary statistics.

- ``windows``: one row per window: the segments' dates, the selected parameters, the
  selection's train (in-sample) and validation objective values and every metric of
  its test (out-of-sample) run, prefixed ``test_``.
- ``oos_returns``: the test runs' per-bar returns stitched in time order, with dates.
  Each test run starts flat with ``capital_base`` in cash; stitching compounds them,
  as if the whole equity were carried from one test segment into the next.
- ``oos_metrics``: :func:`~rustybt_ray.metrics.compute_metrics` of the stitched equity
  curve (returns-based metrics; trade statistics are per window, in ``windows``).
- ``walk_forward_efficiency``: see :func:`walk_forward_efficiency`.
- ``parameter_stability``: see :func:`parameter_stability`.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rustybt_ray.files import atomic_write, ensure_directory, write_bytes_atomic
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.windows import Window

__all__ = ["WalkForwardResult", "parameter_stability", "walk_forward_efficiency"]


def walk_forward_efficiency(is_annual_returns: Sequence[float], oos_annual_returns: Sequence[float]) -> float:
    """Mean out-of-sample annualised return divided by mean in-sample annualised return.

    Pardo's walk-forward efficiency (R. Pardo, *The Evaluation and Optimization of
    Trading Strategies*, 2nd ed., Wiley 2008, ch. 11): the annualised rate of return
    of the out-of-sample (test) runs over that of the in-sample (optimization) runs.
    Here each window's annualised return is the CAGR of its run (train run of the
    selected parameters for in-sample, test run for out-of-sample), averaged over the
    windows where both are finite. Pardo reads roughly 0.5 and more as a robust
    strategy, far less as an overfit one. NaN when no window has both values or the
    mean in-sample return is <= 0 (the ratio then means nothing).

    Note that the CAGR of a short segment is a strong extrapolation (63 days of +3%
    annualise to about +19%), so the ratio is noisy with short windows.
    """
    pairs = [(float(i), float(o)) for i, o in zip(is_annual_returns, oos_annual_returns)
             if i is not None and o is not None and math.isfinite(float(i)) and math.isfinite(float(o))]
    if not pairs:
        return math.nan
    mean_is = sum(i for i, _ in pairs) / len(pairs)
    mean_oos = sum(o for _, o in pairs) / len(pairs)
    return mean_oos / mean_is if mean_is > 0 else math.nan


def parameter_stability(windows: pl.DataFrame, param_columns: dict[str, str]) -> pl.DataFrame:
    """How much the selected parameters move from window to window.

    One row per parameter: ``mean``, ``std`` (population, ddof=0), ``cv = std / |mean|``
    (the coefficient of variation; null for non-numeric parameters, NaN when the mean
    is 0), ``mode`` (the most common value, as text; ties: the first selected),
    ``mode_fraction`` (share of windows that selected it) and ``n_unique``. Windows
    without a selection are left out. ``param_columns`` maps parameter names to their
    column in ``windows``.
    """
    rows = []
    for name, col in param_columns.items():
        values = [v for v in windows[col].to_list() if v is not None] if windows.height else []
        numeric = bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        mean = std = cv = None
        if numeric:
            arr = np.asarray(values, dtype=np.float64)
            mean, std = float(arr.mean()), float(arr.std())
            cv = std / abs(mean) if mean != 0 else math.nan
        counts = Counter(values)
        mode, n_mode = (counts.most_common(1)[0] if counts else (None, 0))
        rows.append({
            "parameter": name, "mean": mean, "std": std, "cv": cv,
            "mode": None if mode is None else str(mode),
            "mode_fraction": n_mode / len(values) if values else None,
            "n_unique": len(counts),
        })
    schema = {"parameter": pl.String, "mean": pl.Float64, "std": pl.Float64, "cv": pl.Float64, "mode": pl.String,
              "mode_fraction": pl.Float64, "n_unique": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


@dataclass
class WalkForwardResult:
    """The outcome of :meth:`WalkForwardOptimizer.run <rustybt_ray.optimize.walk_forward.WalkForwardOptimizer.run>`.

    Attributes:
        windows: one row per window (see the module docstring); ``status`` is "ok",
            "no_selection" (no complete train trial with a finite objective) or
            "test_failed"; ``selected_by`` is "validation", "train" (no validation
            segment) or "train_fallback" (no candidate had a finite validation value).
        oos_returns: ``date``, ``window``, ``returns`` (float64 of the workers' float32
            per-bar returns) over every test segment, in time order. A window without a
            test run holds zeros (flat, in cash).
        oos_metrics: metrics of the stitched out-of-sample equity curve.
        walk_forward_efficiency: :func:`walk_forward_efficiency` of the windows.
        parameter_stability: :func:`parameter_stability` of the selections.
        train_results: each window's train search as an :class:`OptimizationResult`.
        validation: every validation run: ``window``, ``candidate`` (its rank on
            train, 0 = best), the parameters, ``train_<objective>``,
            ``validation_<objective>`` and ``selected``.
        timeline: per window, seconds from the start of the run to its first trial's
            dispatch and to its last result (shows that windows ran concurrently), and
            its trials run on workers and reused (from the journal, or a twin: a
            validation run on the same bars and parameters as an earlier window's test),
            and ``work_s``, the workers' seconds spent on its trials.
        window_specs: the :class:`Window` segments (bar indices into the calendar).
        objective, direction: what selects (the first objective).
        param_columns: parameter name -> column in ``windows``/``validation`` (a
            parameter whose name collides with a fixed column is ``param_<name>``).
        meta: strategy, bundle, dates, config.
        stats: the scheduler's statistics of the run.
    """

    windows: pl.DataFrame
    oos_returns: pl.DataFrame
    oos_metrics: dict[str, float]
    walk_forward_efficiency: float
    parameter_stability: pl.DataFrame
    train_results: list[OptimizationResult]
    validation: pl.DataFrame
    timeline: pl.DataFrame
    window_specs: list[Window]
    objective: str
    direction: str
    param_columns: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)
    stats: Any = None

    @property
    def best_params(self) -> list[dict[str, Any] | None]:
        """The selected parameters of each window, in window order (None where nothing was selected)."""
        out: list[dict[str, Any] | None] = []
        for row in self.windows.iter_rows(named=True):
            ok = row["status"] != "no_selection"
            out.append({n: row[c] for n, c in self.param_columns.items()} if ok else None)
        return out

    def summary(self) -> str:
        """A few lines: windows, out-of-sample return and Sharpe, efficiency, parameter stability."""
        m = self.oos_metrics
        lines = [
            f"Walk-forward: {self.windows.height} windows ({self.meta.get('window_config', '')}), "
            f"selected on {self.objective} ({self.direction})",
            f"  out of sample {self.meta.get('oos_first', '')} .. {self.meta.get('oos_last', '')}: "
            f"total return {m.get('total_return', math.nan):.2%}, CAGR {m.get('cagr', math.nan):.2%}, "
            f"Sharpe {m.get('sharpe', math.nan):.2f}, max drawdown {m.get('max_drawdown', math.nan):.2%}",
            f"  walk-forward efficiency (Pardo): {self.walk_forward_efficiency:.2f}",
        ]
        for row in self.parameter_stability.iter_rows(named=True):
            cv = "n/a" if row["cv"] is None else f"{row['cv']:.2f}"
            frac = math.nan if row["mode_fraction"] is None else row["mode_fraction"]
            lines.append(f"  {row['parameter']}: cv {cv}, most common {row['mode']} in {frac:.0%} of windows")
        bad = self.windows.filter(pl.col("status") != "ok").height
        if bad:
            lines.append(f"  {bad} window(s) without a test run (see windows['status'])")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"WalkForwardResult(windows={self.windows.height}, objective={self.objective!r}, "
                f"oos_sharpe={self.oos_metrics.get('sharpe', math.nan):.4g}, "
                f"wfe={self.walk_forward_efficiency:.4g})")

    def to_parquet(self, directory: str | os.PathLike[str]) -> Path:
        """Write the tables to ``directory`` (created): ``windows``, ``oos_returns``, ``validation``,
        ``parameter_stability`` as Parquet, the scalars and ``meta`` as ``summary.json``; returns the directory.

        The per-window train results are written as ``train_<k>.parquet``
        (:meth:`OptimizationResult.read_parquet` reads them back).
        """
        d = ensure_directory(directory)
        for name in ("windows", "oos_returns", "validation", "parameter_stability"):
            with atomic_write(d / f"{name}.parquet") as fh:
                getattr(self, name).write_parquet(fh)
        for k, res in enumerate(self.train_results):
            res.to_parquet(d / f"train_{k}.parquet")
        scalars = {
            "objective": self.objective, "direction": self.direction, "param_columns": self.param_columns,
            "walk_forward_efficiency": self.walk_forward_efficiency, "oos_metrics": self.oos_metrics,
            "meta": self.meta,
        }
        write_bytes_atomic(d / "summary.json", json.dumps(scalars, allow_nan=True, indent=1, default=str).encode())
        return d
