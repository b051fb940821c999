"""Helpers for the vectorized-engine tests: random bundles and the two paths side by side.

Imported by module name, not from conftest: another folder's conftest module would shadow it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine import (
    BasisPoints,
    FixedBasisPointsSlippage,
    NoCommission,
    NoSlippage,
    PerDollar,
    PerShare,
)
from rustybt_ray.engine.ledger import Transactions
from rustybt_ray.engine.run import _simulate, _valuation
from rustybt_ray.vector import VectorStrategy, simulate_vector

COMMISSIONS = {
    "per_share_min": lambda: PerShare(0.005, 1.0),
    "per_dollar": lambda: PerDollar(0.001),
    "basis_points": lambda: BasisPoints(3.0),
    "none": lambda: NoCommission(),
}
SLIPPAGES = {"fixed_bps": lambda: FixedBasisPointsSlippage(7.0), "none": lambda: NoSlippage()}
FILL_FIELDS = ("bar", "asset", "amount", "price", "commission")


class Zigzag(VectorStrategy):
    """Long/short weights that change every bar, so every bar places orders (NaN: hold, every 5th bar)."""

    scale = 0.3

    def weights(self) -> np.ndarray:
        T, N = self.close.shape
        t = np.arange(T)[:, None]
        w = self.scale * np.sin(0.7 * t + np.arange(N)[None, :]) / N
        w = np.where(np.isnan(self.price), 0.0, w)  # nothing before a listing
        return np.where(t % 5 == 4, np.nan, w)


def random_bundle(seed: int, T: int, N: int, late: list[int], gap_rate: float) -> Bundle:
    """A daily bundle of random-walk prices: asset ``i`` lists at bar ``late[i]``, bars missing at ``gap_rate``."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (T, N)), axis=0)) * rng.uniform(0.5, 3.0, N)
    open_ = close * np.exp(rng.normal(0.0, 0.01, (T, N)))
    missing = rng.random((T, N)) < gap_rate
    for i, first in enumerate(late):
        missing[:first, i] = True
    close = np.where(missing, np.nan, close)
    open_ = np.where(missing, np.nan, open_)
    cal = np.busday_offset(np.datetime64("2024-01-01", "D"), np.arange(T), roll="forward").astype("datetime64[ns]")
    values = np.stack([open_, np.fmax(open_, close), np.fmin(open_, close), close, np.where(missing, np.nan, 1e3)])
    return Bundle("random", "1d", cal, [f"S{i}" for i in range(N)], values)


def event_run(strategy: type, bundle: Bundle, start: Any = None, end: Any = None, capital: float = 100_000.0,
              params: dict | None = None, **costs: Any) -> tuple[np.ndarray, Transactions]:
    """Per-bar equity and fills of the event-driven engine."""
    state = _simulate(strategy, bundle, start, end, capital, params, costs.get("commission"), costs.get("slippage"),
                      costs.get("fill_price", "open"), None)
    state.detach()
    v = _valuation(bundle, state.ledger, state.i0, state.i1, state.capital)
    return v.value, state.ledger.transactions()


def vector_run(strategy: type, bundle: Bundle, start: Any = None, end: Any = None, capital: float = 100_000.0,
               params: dict | None = None, engine: str = "auto", **costs: Any) -> tuple[np.ndarray, Transactions]:
    """Per-bar equity and fills of the vectorized kernel (``engine``: auto, compiled or numpy)."""
    r = simulate_vector(strategy, bundle, start, end, capital, [params], commission=costs.get("commission"),
                        slippage=costs.get("slippage"), fill_price=costs.get("fill_price", "open"),
                        engine=engine)[0]
    return r.value, r.transactions


def assert_same(ev: tuple[np.ndarray, Transactions], vec: tuple[np.ndarray, Transactions]) -> None:
    """Same per-bar equity (1e-9 relative) and the same fills, field by field."""
    (v1, t1), (v2, t2) = ev, vec
    assert v1.shape == v2.shape
    np.testing.assert_allclose(v2, v1, rtol=1e-9, atol=0)
    assert len(t1) == len(t2), (len(t1), len(t2))
    for f in FILL_FIELDS:
        np.testing.assert_array_equal(getattr(t2, f), getattr(t1, f), err_msg=f)
