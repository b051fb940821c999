"""The simulation kernel: K trials' target weights through the event engine's accounting, in one pass.

State is ``(K, N)`` arrays (trials x assets), advanced bar by bar; every bar costs a
fixed number of NumPy calls whatever K, so the per-trial cost falls with K. Per bar
``t``, in the event loop's order:

1. **Fill** the open orders at bar ``t``'s fill price (open, or close with
   ``fill_price="close"``): an asset without a bar (NaN) cannot trade, and its
   orders wait. Orders are kept in *layers*, one per bar that placed orders, so that
   an order that waited fills as its own order (its own commission and minimum), in
   the event book's order (oldest first, assets in column order). Slippage and
   commission come from the models' vectorized ``fill_price`` / ``calculate`` (the
   ones ``Ledger.execute`` uses); cash is reduced fill after fill in that order, as
   ``Ledger.execute_orders`` does (a cumulative sum is a sequential sum).
2. **Value** the account at bar ``t``'s marks (close forward-filled), as
   ``run._valuation`` does.
3. **Size** row ``t`` of the weights as ``order_target_percents`` does: the portfolio
   value ``cash + sum(shares * mark)`` summed in column order (with the marks' NaN as
   0), ``x = w * value / mark - (held + open)``, whole shares by
   :func:`~rustybt_ray.engine.shares.round_shares_array`. A NaN weight places no order.

The equity curves equal the event engine's to float rounding and, up to 64 assets
(where the event engine sums the sizing value in the same order), its fills exactly.

Two loops implement these rules. :mod:`.compiled` (numba, the default for the
built-in cost models) runs them element by element and also accumulates what the
metrics read from the fills, so a sweep keeps no fill log; the NumPy loop below is
the reference and serves cost models written in Python. ``tests/vector/test_compiled.py``
checks that both give the same values, fills and round trips bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.engine.ledger import Transactions
from rustybt_ray.engine.shares import round_shares_array
from rustybt_ray.errors import OrderError, StrategyError, WeightsError
from rustybt_ray.metrics import RoundTrips

_COMPILED: list[Any] = []  # the compiled module, or None without numba; imported on first use


def _compiled_module() -> Any:
    # Imported when a kernel first runs, not with the package: numba and the loaded machine
    # code cost ~110 MB per process, which a sweep's driver (it never simulates) need not pay.
    if not _COMPILED:
        try:
            from rustybt_ray.vector import compiled
        except ImportError:  # pragma: no cover - numba is a dependency; a broken install takes NumPy
            compiled = None
        _COMPILED.append(compiled)
    return _COMPILED[0]


@dataclass(frozen=True)
class KernelResult:
    """K trials over bars ``[i0, i1)``: per-bar value and gross exposure ``(K, n)``, and fills or their summary.

    ``fills`` holds each trial's fill log (when asked for); ``traded`` (value traded
    per bar, ``(K, n)``), ``n_transactions`` and ``trips`` (each trial's
    :class:`~rustybt_ray.metrics.RoundTrips`) are what the metrics read from the
    fills, accumulated by the compiled kernel so a sweep keeps no fill log.
    """

    value: np.ndarray
    gross: np.ndarray
    fills: list[Transactions] | None
    traded: np.ndarray | None = None
    n_transactions: np.ndarray | None = None
    trips: list[RoundTrips] | None = field(default=None)
    compiled: bool = False


def simulate(
    bundle: Bundle,
    weights: np.ndarray,
    i0: int,
    i1: int,
    capital: float,
    commission: CommissionModel,
    slippage: SlippageModel,
    fill_price: str = "open",
    *,
    record_fills: bool = True,
    engine: str = "auto",
) -> KernelResult:
    """Run K trials' weights ``(n, K, N)`` (bar ``i0 + j`` is row ``j``) over bars ``[i0, i1)``.

    ``engine`` picks the loop: ``"compiled"`` (numba; built-in cost models only),
    ``"numpy"`` (any cost model; the reference), or ``"auto"`` (compiled where it
    can). ``record_fills=False`` skips the fill log; the compiled loop then returns
    only its summary (``traded``, ``n_transactions``, ``trips``).

    Raises :class:`WeightsError` for weights of the wrong shape and :class:`OrderError`
    (naming the asset and bar) for a non-zero weight on an asset without a price yet,
    as ``order_target_percents`` would.
    """
    n_assets = len(bundle.assets)
    n = i1 - i0
    if weights.ndim != 3 or weights.shape[0] != n or weights.shape[2] != n_assets:
        raise WeightsError(f"kernel weights must be (bars, trials, assets) = ({n}, K, {n_assets}), "
                           f"got {weights.shape}")
    if engine not in ("auto", "compiled", "numpy"):
        raise WeightsError(f"engine must be 'auto', 'compiled' or 'numpy', got {engine!r}")
    if getattr(slippage, "volume_limit", None) is not None:
        # Target weights fill whole at the next bar; a volume cap would leave orders open.
        raise StrategyError(
            f"the vectorized engine fills every order whole, so it cannot apply {slippage!r}, which caps fills by "
            "bar volume: run the strategy with run_algorithm, or use FixedBasisPointsSlippage or NoSlippage"
        )
    _compiled = _compiled_module() if engine != "numpy" else None
    costs = _compiled.cost_numbers(commission, slippage) if _compiled is not None else None
    if engine == "compiled" and costs is None:
        raise WeightsError(
            "the compiled kernel serves the built-in cost models (PerShare, PerDollar, BasisPoints, NoCommission; "
            f"FixedBasisPointsSlippage, NoSlippage), not {commission!r} / {slippage!r}: use engine='numpy'"
        )
    if engine != "numpy" and costs is not None:
        out = _simulate_compiled(bundle, weights, i0, i1, capital, costs, fill_price, record_fills)
        if out is not None:
            return out
    return _simulate_numpy(bundle, weights, i0, i1, capital, commission, slippage, fill_price)


def _no_price(bundle: Bundle, i0: int, j: int, a: int) -> OrderError:
    return OrderError(
        f"{bundle.assets[a].symbol} has no price at {bundle.calendar[i0 + j]!s:.19} "
        f"(first bar {bundle.assets[a].start_date!s:.10}); a non-zero weight needs a price: "
        "give NaN or 0 before the asset's first bar"
    )


def _bad_shares(bundle: Bundle, i0: int, j: int) -> OrderError:
    return OrderError(f"target weights at {bundle.calendar[i0 + j]!s:.19} give share counts out of range "
                      "(a huge weight, or a portfolio value of NaN?)")


def _simulate_compiled(bundle: Bundle, weights: np.ndarray, i0: int, i1: int, capital: float,
                       costs: tuple[float, float, float, float, float], fill_price: str,
                       record_fills: bool) -> KernelResult | None:
    """The compiled loop; None when its order queues overflowed (the NumPy kernel then runs instead)."""
    K = weights.shape[1]
    marks = bundle.price[i0:i1]
    ref = (bundle.open if fill_price == "open" else bundle.close)[i0:i1]
    _compiled = _compiled_module()
    (status, j, _k, a, value, gross, traded, n_tx, trips, trip_pnl, n_open,
     fills) = _compiled.simulate_compiled(weights, marks, ref, capital, costs, record_fills)
    if status == _compiled.NO_PRICE:
        raise _no_price(bundle, i0, j, a)
    if status == _compiled.BAD_SHARES:
        raise _bad_shares(bundle, i0, j)
    if status == _compiled.QUEUE_FULL:
        return None
    # Rows come in execution order, trials interleaved; a stable sort by trial keeps each trial's order.
    tk = trips[:, 0].astype(np.int64)
    order = np.argsort(tk, kind="stable")
    bounds = np.searchsorted(tk[order], np.arange(K + 1))
    per_trial = []
    for i in range(K):
        s = order[bounds[i]:bounds[i + 1]]
        per_trial.append(RoundTrips(
            asset=trips[s, 1].astype(np.int64), open_bar=trips[s, 2].astype(np.int64) + i0,
            close_bar=trips[s, 3].astype(np.int64) + i0, pnl=trip_pnl[s, 0].copy(),
            direction=trip_pnl[s, 1].astype(np.int64), n_open=int(n_open[i]),
        ))
    logs = None
    if record_fills:
        fk = fills[:, 0].astype(np.int64)
        order = np.argsort(fk, kind="stable")
        bounds = np.searchsorted(fk[order], np.arange(K + 1))
        ids = np.full(fills.shape[0], -1, dtype=np.int64)
        logs = []
        for i in range(K):
            s = order[bounds[i]:bounds[i + 1]]
            logs.append(Transactions(fills[s, 1].astype(np.int64) + i0, fills[s, 2].astype(np.int64),
                                     fills[s, 3], fills[s, 4], fills[s, 5], ids[s]))
    return KernelResult(value, gross, logs, traded, n_tx, per_trial, compiled=True)


def _simulate_numpy(bundle: Bundle, weights: np.ndarray, i0: int, i1: int, capital: float,
                    commission: CommissionModel, slippage: SlippageModel, fill_price: str) -> KernelResult:
    """The NumPy kernel: K-wide array operations per bar (any cost model)."""
    n_assets = len(bundle.assets)
    n = i1 - i0
    K = weights.shape[1]
    marks = bundle.price[i0:i1]  # (n, N), NaN before an asset's first bar
    listed = marks > 0
    active = ~np.isnan(weights)
    bad = active & (weights != 0) & ~listed[:, None, :]
    if bad.any():
        j, _, a = np.argwhere(bad)[0]
        raise _no_price(bundle, i0, int(j), int(a))
    any_nan = not active.all()
    w0 = np.where(active, weights, 0.0) if any_nan else weights
    mark0 = np.where(listed, marks, 0.0)  # the sizing view's marks: NaN as 0.0 (rows.py)
    safe = np.where(listed, marks, 1.0)  # divisor where the weight is 0 (never used in effect)
    ref_all = (bundle.open if fill_price == "open" else bundle.close)[i0:i1]
    has_all = ~np.isnan(ref_all)
    bar_all = has_all.all(axis=1)

    cash = np.full(K, float(capital))
    pos = np.zeros((K, n_assets))
    value = np.empty((K, n))
    gross = np.empty((K, n))
    pending: list[np.ndarray] = []  # open orders, one (K, N) layer per placing bar, oldest first
    logs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    fill_px, calc = slippage.fill_price, commission.calculate

    for j in range(n):
        if pending:
            ref = np.broadcast_to(ref_all[j], (K, n_assets))
            if bar_all[j]:
                layers_in = pending
                masks = None
                pending = []
            else:
                has = has_all[j]
                layers_in, masks, keep = [], [], []
                for layer in pending:
                    f = (layer != 0) & has
                    if f.any():
                        layers_in.append(np.where(f, layer, 0.0))
                        masks.append(f)
                    rest = np.where(f, 0.0, layer)
                    if rest.any():
                        keep.append(rest)
                pending = keep
            if layers_in:
                costs = [cash[:, None]]
                for li, q in enumerate(layers_in):
                    with np.errstate(invalid="ignore"):
                        px = fill_px(q, ref)
                        c = calc(q, px)
                        v = q * px + c  # Ledger: cash -= amount * price + commission
                    if masks is not None:  # entries without a bar are NaN here: no fill
                        v = np.where(masks[li], v, 0.0)
                    costs.append(-v)
                    pos += q
                    k_idx, a_idx = np.nonzero(q)
                    if k_idx.shape[0]:
                        px = np.broadcast_to(px, q.shape)
                        c = np.broadcast_to(c, q.shape)
                        logs.append((i0 + j, k_idx, a_idx, q[k_idx, a_idx], px[k_idx, a_idx], c[k_idx, a_idx]))
                # cash minus each fill's cost in book order, one after the other
                cash = np.cumsum(np.concatenate(costs, axis=1), axis=1)[:, -1]
        pm = pos * mark0[j]  # shares x marks; 0 where flat (event: where(held, pos * price, 0))
        value[:, j] = cash + pm.sum(axis=1)
        gross[:, j] = np.abs(pm).sum(axis=1)
        pv = cash + np.cumsum(pm, axis=1)[:, -1]  # sum(map(mul, pos, prow)): column order
        held = pos
        for layer in pending:
            held = held + layer
        x = w0[j] * pv[:, None] / safe[j] - held
        if any_nan:
            x = np.where(active[j], x, 0.0)
        try:
            r = round_shares_array(x)
        except (ValueError, OverflowError):
            raise _bad_shares(bundle, i0, j) from None
        if r.any():
            pending.append(r)
    return KernelResult(value, gross, _split(logs, K))


def _split(logs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
           K: int) -> list[Transactions]:
    """The fill log per trial, each in execution order."""
    if not logs:
        e = np.empty(0)
        ei = np.empty(0, dtype=np.int64)
        return [Transactions(ei, ei, e, e, e, ei) for _ in range(K)]
    bar = np.repeat(np.array([x[0] for x in logs], dtype=np.int64), [x[1].shape[0] for x in logs])
    k = np.concatenate([x[1] for x in logs])
    a = np.concatenate([x[2] for x in logs]).astype(np.int64)
    q = np.concatenate([x[3] for x in logs])
    p = np.concatenate([x[4] for x in logs])
    c = np.concatenate([x[5] for x in logs])
    order = np.argsort(k, kind="stable")
    bounds = np.searchsorted(k[order], np.arange(K + 1))
    out = []
    ids = np.full(k.shape[0], -1, dtype=np.int64)
    for i in range(K):
        s = order[bounds[i]:bounds[i + 1]]
        out.append(Transactions(bar[s], a[s], q[s], p[s], c[s], ids[s]))
    return out
