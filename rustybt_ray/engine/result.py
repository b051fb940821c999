"""``BacktestResult``: what one backtest returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl


@dataclass
class BacktestResult:
    """The outcome of :func:`run_algorithm`.

    Attributes:
        metrics: performance metrics (see :mod:`rustybt_ray.metrics`).
        bars: per-bar table: ``date, portfolio_value, cash, positions_value,
            gross_exposure, returns`` and one column per recorded name.
        returns: per-bar simple returns (``float64``), the first against ``capital_base``.
        daily_returns: per-session returns (equal to ``returns`` for daily bars).
        transactions: every fill: ``date, symbol, amount, price, commission, order_id``.
        positions: shares held at the end of each bar, ``(n_bars, n_assets)``.
        params: the parameter values the run used (defaults filled in).
    """

    metrics: dict[str, float]
    bars: pl.DataFrame
    returns: np.ndarray
    daily_returns: np.ndarray
    transactions: pl.DataFrame
    positions: np.ndarray
    params: dict[str, Any]
    strategy: str
    bundle: str
    bundle_version: str
    start: np.datetime64
    end: np.datetime64
    capital_base: float
    symbols: list[str] = field(default_factory=list)

    @property
    def portfolio_value(self) -> np.ndarray:
        """Equity at the end of each bar."""
        return self.bars["portfolio_value"].to_numpy()

    @property
    def final_value(self) -> float:
        """Equity at the end of the run."""
        return float(self.metrics["final_value"])

    def summary(self) -> str:
        """A short human-readable report of the run and its metrics."""
        lines = [
            f"{self.strategy} on {self.bundle} {self.start!s:.10}..{self.end!s:.10}"
            f" ({len(self.returns)} bars, capital {self.capital_base:,.0f})",
        ]
        if self.params:
            lines.append("params: " + ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items())))
        width = max(len(k) for k in self.metrics) if self.metrics else 0
        for k, v in self.metrics.items():
            lines.append(f"  {k:<{width}}  {_fmt(v)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        sharpe = self.metrics.get("sharpe", float("nan"))
        total = self.metrics.get("total_return", float("nan"))
        return (
            f"BacktestResult({self.strategy}, {len(self.returns)} bars, total_return={total:.4f}, "
            f"sharpe={sharpe:.3f}, {self.transactions.height} fills)"
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.6g}"
    return str(v)


def carry_forward(col: np.ndarray, at: np.ndarray) -> Any:
    """The recorded column with each value kept until the next bar that recorded one (``at``), as zipline does.

    Bars before the first record are NaN (None in a column of objects); a value
    recorded as NaN or None stays NaN or None.
    """
    if col.dtype == object:
        out = list(col)
        last: Any = None
        for i, recorded in enumerate(at.tolist()):
            if recorded:
                last = out[i]
            else:
                out[i] = last
        return pl.Series(out, dtype=pl.Object) if any(not isinstance(v, (int, float, str, type(None)))
                                                       for v in out) else out
    # col[0] is NaN unless bar 0 recorded, so bars before the first record read it.
    idx = np.where(at, np.arange(col.shape[0]), 0)
    np.maximum.accumulate(idx, out=idx)
    return col[idx]
