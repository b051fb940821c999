"""Performance metrics of a finished backtest.

Everything here runs ONCE at the end of a run on NumPy arrays (never per bar),
vectorized, without pandas, so a sweep of thousands of backtests pays
microseconds per run for its metrics.

Conventions (shared by every function below):

* ``portfolio_value[i]`` is the equity at the end of bar ``i``; ``n`` bars.
* Per-bar simple returns: ``r[0] = pv[0]/capital_base - 1`` and
  ``r[i] = pv[i]/pv[i-1] - 1``.
* Ratios are annualised with ``sqrt(periods_per_year)``; volatilities use the
  sample standard deviation (``ddof=1``).
* A metric that is undefined (no bars, a zero denominator, too few returns) is
  ``NaN``; degenerate inputs never raise.  A zero denominator gives NaN rather
  than +/-inf, so a sweep never ranks a one-trade fluke "infinitely" good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "METRIC_DIRECTIONS",
    "RoundTrips",
    "compute_metrics",
    "returns_from_values",
    "round_trips",
]

NAN = float("nan")

# A standard deviation this small relative to the returns is floating-point
# noise (e.g. a constant 1% return recomputed from compounded values), not
# risk; dividing by it would report a Sharpe of ~1e15.
_STD_TOL = 1e-14

#: Which way an optimizer should push each key of :func:`compute_metrics`.
#: ``"none"`` marks descriptive keys (counts, activity) that are not objectives.
METRIC_DIRECTIONS: dict[str, str] = {
    "total_return": "maximize",
    "cagr": "maximize",
    "annual_volatility": "minimize",
    "sharpe": "maximize",
    "sortino": "maximize",
    "max_drawdown": "minimize",
    "max_drawdown_duration": "minimize",
    "calmar": "maximize",
    "turnover": "none",
    "n_transactions": "none",
    "n_trades": "none",
    "win_rate": "maximize",
    "avg_trade_pnl": "maximize",
    "profit_factor": "maximize",
    "exposure": "none",
    "avg_gross_leverage": "none",
    "final_value": "maximize",
    "n_bars": "none",
}


@dataclass(frozen=True)
class RoundTrips:
    """Closed round trips, in the order they closed.

    ``asset``/``open_bar``/``close_bar`` are int64, ``pnl`` float64 (net of
    commissions), ``direction`` int64 (+1 long, -1 short); ``n_open`` counts
    trips still open after the last transaction.
    """

    asset: np.ndarray
    open_bar: np.ndarray
    close_bar: np.ndarray
    pnl: np.ndarray
    direction: np.ndarray
    n_open: int

    def __len__(self) -> int:
        return int(self.pnl.shape[0])


def round_trips(
    bar: np.ndarray,
    asset: np.ndarray,
    amount: np.ndarray,
    price: np.ndarray,
    commission: np.ndarray,
) -> RoundTrips:
    """Split time-ordered transactions into per-asset round trips.

    A trip starts when an asset's position leaves 0 and ends when it returns to
    0.  A fill that crosses zero (long 10, sell 15) closes the trip and opens a
    new one with the remainder (short 5); its commission is split pro rata by
    shares (10/15 to the closing trip, 5/15 to the new one).

    ``pnl = sum(-amount * price) - sum(commission)`` over the trip's fills
    (the trip's net cash flow; a closed trip holds no shares, so this is its
    realised P&L).  Positions within ``1e-9`` (relative) of zero count as flat,
    so fractional shares do not leave phantom open trips.

    Implementation: whole-share streams (the engine always trades whole shares)
    take a vectorized path -- stable sort by asset, exact per-asset positions by
    ``cumsum``, trip ids from the fills that open a trip, per-trip P&L by
    ``np.bincount`` adding each trip's terms in the same order and with the
    same float operations as the reference loop, so results match it exactly.
    Streams where that exactness is not guaranteed (non-integer or non-finite
    amounts, ``sum(|amount|) >= 2**53``, a flat-tolerance snap that would fire
    on a nonzero whole-share position, non-integer bar/asset ids, non-float
    prices or commissions) fall back to :func:`_round_trips_loop`, the plain
    sequential reference, which defines the semantics.
    """
    cols = [np.asarray(x) for x in (bar, asset, amount, price, commission)]
    if len({c.shape for c in cols}) != 1 or cols[0].ndim != 1:
        raise ValueError("round_trips: all transaction arrays must be 1-D and the same length")
    out = _round_trips_vec(*cols)
    return out if out is not None else _round_trips_loop(*cols)


_EMPTY_I = np.empty(0, dtype=np.int64)
_INT_KINDS = "biu"


def _as_index(x: np.ndarray) -> np.ndarray | None:
    """int64 copy of a bar/asset column equal to ``int(v)`` per value, or None."""
    k = x.dtype.kind
    if k in _INT_KINDS and not (k == "u" and x.dtype.itemsize >= 8):
        return x.astype(np.int64, copy=False)
    if k == "f" and bool(np.all(np.abs(x) < 2.0**62)):  # False for NaN/inf
        return x.astype(np.int64)  # truncates toward zero, like int()
    return None


def _round_trips_vec(
    bar: np.ndarray, asset: np.ndarray, amount: np.ndarray, price: np.ndarray, commission: np.ndarray
) -> RoundTrips | None:
    """Vectorized :func:`round_trips` for whole-share streams; None where it may not be exact.

    Written to allocate few full-length temporaries (``out=`` buffers, int32 and
    uint16 where they fit): at ~24k fills, fresh allocations cost as much as the math.
    """
    n = amount.shape[0]
    if n == 0:
        e = np.empty(0, dtype=np.float64)
        return RoundTrips(_EMPTY_I, _EMPTY_I.copy(), _EMPTY_I.copy(), e, _EMPTY_I.copy(), 0)
    if amount.dtype.kind not in _INT_KINDS + "f" or price.dtype.kind != "f" or commission.dtype.kind != "f":
        return None
    q = amount.astype(np.float64, copy=False)
    p = price.astype(np.float64, copy=False)
    c = commission.astype(np.float64, copy=False)
    buf = np.empty(n, dtype=np.float64)
    # Whole shares with sum(|q|) < 2**53: integer positions equal the loop's
    # float sums exactly.  (A NaN or inf amount fails the bound.)
    abs_sum = float(np.abs(q, out=buf).sum())
    if not abs_sum < 2.0**53:
        return None
    idt = np.int32 if abs_sum < 2.0**31 else np.int64  # holds every position
    qi = q.astype(idt)
    if np.subtract(q, qi, out=buf).any():
        return None
    b = _as_index(bar)
    a = _as_index(asset)
    if b is None or a is None:
        return None

    # Stable sort by asset keeps fill order within each asset, hence within each
    # trip.  Ids spanning < 65536 sort as uint16 (a radix sort).
    amin, amax = int(a.min()), int(a.max())
    if amax - amin < 65536:
        key = np.subtract(a, amin, out=np.empty(n, dtype=np.uint16), casting="unsafe")
    else:
        key = a
    perm = np.argsort(key, kind="stable")
    key_s = key[perm]
    q_s = qi[perm]
    del key, qi

    # Per-asset positions after (new) and before (old) each fill: one cumsum,
    # with each asset's first fill offset by the previous asset's total.
    new = q_s.copy()
    brk = np.flatnonzero(key_s[1:] != key_s[:-1]) + 1  # first fill of assets 2, 3, ...
    if brk.size:
        new[brk] -= np.add.reduceat(q_s, np.concatenate(([0], brk)))[:-1]
    np.cumsum(new, out=new)
    del key_s
    # old = new - q_s (the position before each fill) is never materialized.

    # The loop snaps |new| <= 1e-9*max(|old|, |q|) to 0.  A nonzero whole-share
    # position can only snap when some |old| or |q| >= 1e9 (bounded by abs_sum);
    # if one would, defer to the loop.
    if abs_sum >= 1e9:
        old = (new - q_s).astype(np.float64)
        lim = 1e-9 * np.maximum(np.abs(old), np.abs(q_s).astype(np.float64))
        if np.any((new != 0) & (np.abs(new.astype(np.float64)) <= lim)):
            return None

    was_open = new != q_s  # old != 0
    now_open = new != 0
    q_nz = q_s != 0
    # Sign change (both sides nonzero): the fill closes a trip and opens the next.
    flip = new < q_s  # old < 0
    flip ^= new < 0
    flip &= was_open
    flip &= now_open
    starts = ~was_open
    starts &= q_nz
    starts |= flip
    ends = was_open & ~now_open
    ends |= flip
    tid = np.cumsum(starts, dtype=np.intp)
    tid -= 1  # id of the trip open after each fill (trips numbered in sorted order)
    si = np.flatnonzero(starts)  # opening fill of each trip
    n_trips = si.size

    # Net cash flow per trip.  np.bincount adds in input order, so each trip's
    # terms are summed in fill order with the loop's float operations: ordinary
    # fills add (-q*p) - c; a flip's term (-new*p) - c*(1-frac) opens the next
    # trip and the closing trip then gets (cash + old*p) - c*frac.
    w = p[perm]
    w *= q_s  # exact int -> float: q*p
    np.negative(w, out=w)  # -(q*p) == (-q)*p exactly
    w -= np.take(c, perm, out=buf)
    del buf
    fi = np.flatnonzero(flip)
    if fi.size:
        fo = perm[fi]
        oldf = (new[fi] - q_s[fi]).astype(np.float64)
        frac = np.abs(oldf) / np.abs(q[fo])
        w[fi] = -new[fi].astype(np.float64) * p[fo] - c[fo] * (1.0 - frac)
    direction = np.where(new[si] > 0, 1, -1).astype(np.int64)
    flat_zero = None if q_nz.all() else ~(was_open | q_nz)
    del new, q_s, was_open, now_open
    ids = tid
    if n_trips and flat_zero is not None:
        # Zero fills while flat belong to no trip: send them to a dummy bin.
        ids = tid.copy()
        ids[flat_zero] = n_trips
    pnl_all = np.bincount(ids, weights=w, minlength=n_trips + 1) if n_trips else np.empty(1)
    if fi.size:
        ctid = tid[fi] - 1  # distinct: a trip closes once
        pnl_all[ctid] = (pnl_all[ctid] + oldf * p[fo]) - c[fo] * frac

    # Trips in the order they closed: scatter each closing fill's trip id back to
    # its original row, then read the rows in time order.
    ei = np.flatnonzero(ends)
    rows = perm[ei]
    closed_at = np.zeros(n, dtype=bool)
    closed_at[rows] = True
    trip_at = np.empty(n, dtype=np.int32 if n_trips < 2**31 else np.int64)
    ctrip = tid[ei]
    ctrip -= flip[ei]
    trip_at[rows] = ctrip
    close_rows = np.flatnonzero(closed_at)
    ctrip = trip_at[close_rows]
    opener = si[ctrip]
    open_rows = perm[opener]
    return RoundTrips(
        asset=a[open_rows].astype(np.int64, copy=True),
        open_bar=b[open_rows],
        close_bar=b[close_rows],
        pnl=pnl_all[ctrip],
        direction=direction[ctrip],
        n_open=int(n_trips - ei.size),
    )


def _round_trips_loop(
    bar: np.ndarray, asset: np.ndarray, amount: np.ndarray, price: np.ndarray, commission: np.ndarray
) -> RoundTrips:
    """Sequential reference :func:`round_trips` (any amounts); defines the semantics."""
    cols = (bar, asset, amount, price, commission)
    pos: dict[int, float] = {}  # asset -> signed shares held
    start: dict[int, int] = {}  # asset -> bar the open trip started
    cash: dict[int, float] = {}  # asset -> net cash flow of the open trip
    out_a: list[int] = []
    out_o: list[int] = []
    out_c: list[int] = []
    out_p: list[float] = []
    out_d: list[int] = []

    def close(a: int, b: int, pnl: float, side: float) -> None:
        out_a.append(a)
        out_o.append(start[a])
        out_c.append(b)
        out_p.append(pnl)
        out_d.append(1 if side > 0 else -1)

    # Plain Python over .tolist(): transactions are sparse, and scalar floats
    # are much faster than NumPy scalars in a loop.
    for b, a, q, p, c in zip(*(x.tolist() for x in cols)):
        b, a = int(b), int(a)
        old = pos.get(a, 0.0)
        new = old + q
        if abs(new) <= 1e-9 * max(abs(old), abs(q)):
            new = 0.0  # exact flat despite float residue of fractional shares
        if old == 0.0:
            if q == 0.0:
                continue  # a zero fill while flat belongs to no trip
            start[a], cash[a], pos[a] = b, -q * p - c, new
        elif new == 0.0 or new * old > 0.0:
            # Adds to, partially closes, or exactly closes the trip.
            cash[a] += -q * p - c
            pos[a] = new
            if new == 0.0:
                close(a, b, cash[a], old)
        else:
            # Flip: -old shares close this trip, `new` shares open the next.
            frac = abs(old) / abs(q)
            close(a, b, cash[a] + old * p - c * frac, old)
            start[a], cash[a], pos[a] = b, -new * p - c * (1.0 - frac), new

    return RoundTrips(
        asset=np.asarray(out_a, dtype=np.int64),
        open_bar=np.asarray(out_o, dtype=np.int64),
        close_bar=np.asarray(out_c, dtype=np.int64),
        pnl=np.asarray(out_p, dtype=np.float64),
        direction=np.asarray(out_d, dtype=np.int64),
        n_open=sum(1 for v in pos.values() if v != 0.0),
    )


def returns_from_values(portfolio_value: np.ndarray, capital_base: float) -> np.ndarray:
    """Per-bar simple returns of an equity curve.

    ``r[0] = pv[0]/capital_base - 1``, ``r[i] = pv[i]/pv[i-1] - 1``.  After the
    equity hits 0 the return is 0 while it stays at 0 (a ruined account is flat)
    and NaN if it moves off 0 (a return on zero capital is undefined).
    """
    pv = np.asarray(portfolio_value, dtype=np.float64).ravel()
    if pv.size == 0:
        return np.empty(0, dtype=np.float64)
    prev = np.empty_like(pv)
    prev[0] = capital_base
    prev[1:] = pv[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = pv / prev - 1.0
    zero = prev == 0.0
    if zero.any():
        r[zero] = np.where(pv[zero] == 0.0, 0.0, NAN)
    return r


def _safe_div(num: float, den: float) -> float:
    """num/den as a float; NaN when the denominator is 0 or either side is NaN."""
    if den == 0.0 or math.isnan(den) or math.isnan(num):
        return NAN
    return float(num / den)


def _drawdown(pv: np.ndarray, capital_base: float) -> tuple[float, float]:
    """(max drawdown as a positive fraction, longest run of bars below the peak)."""
    # The running peak includes capital_base: losing from bar 0 is a drawdown.
    peak = np.maximum.accumulate(np.maximum(pv, capital_base))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0.0, 1.0 - pv / peak, NAN)
    below = pv < peak
    # For each bar, the index of the last bar at its peak (-1 if none yet);
    # the distance to it is the length of the below-peak run ending there.
    idx = np.arange(pv.size)
    last_top = np.maximum.accumulate(np.where(below, -1, idx))
    duration = float(np.max(idx - last_top)) if pv.size else NAN
    return float(np.max(dd)), duration


def compute_metrics(
    portfolio_value: np.ndarray,
    capital_base: float,
    periods_per_year: float,
    *,
    gross_exposure: np.ndarray | None = None,
    traded_value: np.ndarray | None = None,
    trips: RoundTrips | None = None,
    n_transactions: int = 0,
    risk_free_rate: float = 0.0,
) -> dict[str, float]:
    """Summary metrics of one backtest (keys listed in :data:`METRIC_DIRECTIONS`).

    With ``n`` bars, ``r`` from :func:`returns_from_values`, ``ppy`` periods per
    year and ``rf_bar = (1 + risk_free_rate)**(1/ppy) - 1``:

    * ``total_return = pv[-1]/capital_base - 1``;
      ``cagr = (pv[-1]/capital_base)**(ppy/n) - 1`` (-1 if the equity ends at 0,
      NaN if it ends below 0, +inf if it overflows a float).
    * ``annual_volatility = std(r, ddof=1) * sqrt(ppy)``;
      ``sharpe = mean(r - rf_bar) / std(r, ddof=1) * sqrt(ppy)``;
      ``sortino = mean(r - rf_bar) / sqrt(mean(min(r - rf_bar, 0)**2)) * sqrt(ppy)``
      (empyrical's downside deviation, over all bars).  All three need n >= 2.
    * ``max_drawdown = max(1 - pv/peak)`` with ``peak`` the running max of
      ``capital_base`` and ``pv`` (positive; 1.0 = wiped out);
      ``max_drawdown_duration`` = longest run of consecutive bars with
      ``pv < peak`` (bars); ``calmar = cagr / max_drawdown``.
    * ``turnover = sum(traded_value) / mean(pv) / (n/ppy)`` (per year).
    * ``exposure`` = share of bars with ``gross_exposure > 0``;
      ``avg_gross_leverage = mean(gross_exposure/pv)`` over bars with pv > 0.
    * From ``trips``: ``n_trades`` (closed trips), ``win_rate`` (pnl > 0),
      ``avg_trade_pnl``, ``profit_factor = sum(wins)/|sum(losses)|``.

    Metrics whose input was not given, or is undefined, are NaN.  Raises
    ValueError only if ``gross_exposure`` does not have one value per bar.
    """
    pv = np.asarray(portfolio_value, dtype=np.float64).ravel()
    n = int(pv.size)
    cb = float(capital_base)
    ppy = float(periods_per_year)
    m = dict.fromkeys(METRIC_DIRECTIONS, NAN)
    m["n_bars"] = float(n)
    m["n_transactions"] = float(n_transactions)

    if trips is not None:
        pnl = np.asarray(trips.pnl, dtype=np.float64)
        m["n_trades"] = float(pnl.size)
        if pnl.size:
            wins = float(pnl[pnl > 0.0].sum())
            losses = float(-pnl[pnl < 0.0].sum())
            m["win_rate"] = float(np.count_nonzero(pnl > 0.0)) / pnl.size
            m["avg_trade_pnl"] = float(pnl.mean())
            m["profit_factor"] = _safe_div(wins, losses)

    if n == 0:
        return m

    final = float(pv[-1])
    m["final_value"] = final
    growth = _safe_div(final, cb)
    m["total_return"] = growth - 1.0
    if growth >= 0.0 and ppy > 0.0:  # a negative base has no real fractional power
        try:
            m["cagr"] = growth ** (ppy / n) - 1.0
        except OverflowError:  # short, wildly profitable runs: past float range
            m["cagr"] = math.inf

    m["max_drawdown"], m["max_drawdown_duration"] = _drawdown(pv, cb)
    if m["max_drawdown"] > 0.0:
        m["calmar"] = m["cagr"] / m["max_drawdown"]

    if n >= 2 and ppy > 0.0:
        r = returns_from_values(pv, cb)
        ann = math.sqrt(ppy)
        rf_bar = (1.0 + risk_free_rate) ** (1.0 / ppy) - 1.0
        excess = r - rf_bar
        mu = float(excess.mean())
        sd = float(r.std(ddof=1))
        m["annual_volatility"] = sd * ann
        if sd > _STD_TOL * max(1.0, abs(mu)):
            m["sharpe"] = mu / sd * ann
        downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)))
        if downside > _STD_TOL * max(1.0, abs(mu)):
            m["sortino"] = mu / downside * ann

    mean_pv = float(pv.mean())
    if traded_value is not None and ppy > 0.0:
        tv = float(np.asarray(traded_value, dtype=np.float64).sum())
        m["turnover"] = _safe_div(tv, mean_pv * (n / ppy)) if mean_pv > 0.0 else NAN

    if gross_exposure is not None:
        ge = np.asarray(gross_exposure, dtype=np.float64).ravel()
        if ge.size != n:  # an engine bug, not a degenerate backtest: say so
            raise ValueError(f"gross_exposure has {ge.size} values for {n} bars")
        m["exposure"] = float(np.count_nonzero(ge > 0.0)) / n
        alive = pv > 0.0  # leverage on zero or negative equity is meaningless
        if alive.any():
            m["avg_gross_leverage"] = float(np.mean(ge[alive] / pv[alive]))
    return m
