"""The compiled kernel: :mod:`.kernel`'s accounting as one numba loop over bars, trials and assets.

Same rules, same float operations, same order as the NumPy kernel (which stays the
reference, and the path for cost models written in Python); the equality tests in
``tests/vector`` run both. Why compiled: the NumPy kernel pays ~25 NumPy calls per
bar whatever K, and regrouping a fill log of one entry per trial, bar and asset
costs as much as the simulation; here the loop does per element only the
arithmetic, and the metrics' inputs (traded value per bar, the round trips, the fill
count) are accumulated on the way, so a sweep keeps no fill log at all.

Cost models are passed as five numbers (:func:`cost_numbers`): a fill of ``q``
shares at reference price ``ref`` costs ``px = ref * (buy if q > 0 else sell)`` and
``c = max(|q| * per_share, min_cost) + |q * px| * per_dollar``. For each built-in
model the unused terms are exact zeros, so ``c`` equals the model's own
``calculate`` bit for bit.

Compiled with ``cache=True``: the machine code is written next to this module (or
under ``NUMBA_CACHE_DIR``) on first use and loaded by every later process.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rustybt_ray.engine.costs import (
    BasisPoints,
    CommissionModel,
    FixedBasisPointsSlippage,
    NoCommission,
    NoSlippage,
    PerDollar,
    PerShare,
    SlippageModel,
)
from rustybt_ray.engine.shares import NEG_SNAP_FRACTION, SNAP_FRACTION

#: Pending orders kept per trial and asset (orders wait only while their asset has no bar);
#: a deeper queue makes :func:`simulate_compiled` report ``QUEUE_FULL`` and the caller use NumPy.
QUEUE_DEPTH = 8

OK, BAD_SHARES, NO_PRICE, QUEUE_FULL = 0, 1, 2, 3

#: Most round trips per trial and asset seen by this process: sizes the next call's trip table.
_TRIPS_SEEN = [8.0]
#: Most fills per bar, trial and asset seen by this process (when fills are recorded).
_FILLS_SEEN = [0.25]


def cost_numbers(commission: CommissionModel, slippage: SlippageModel) -> tuple[float, float, float, float,
                                                                                 float] | None:
    """``(buy, sell, per_share, min_cost, per_dollar)`` for built-in models; None for any other model."""
    ts, tc = type(slippage), type(commission)
    if ts is FixedBasisPointsSlippage:
        k = slippage.basis_points / 10_000.0  # type: ignore[attr-defined]
        # price * (1.0 + sign * k), as FixedBasisPointsSlippage.fill_price computes it
        buy, sell = 1.0 + 1.0 * k, 1.0 + -1.0 * k
    elif ts is NoSlippage:
        buy = sell = 1.0
    else:
        return None
    if tc is PerShare:
        return buy, sell, commission.cost, commission.min_trade_cost, 0.0  # type: ignore[attr-defined]
    if tc is PerDollar or tc is BasisPoints:
        return buy, sell, 0.0, 0.0, commission.cost  # type: ignore[attr-defined]
    if tc is NoCommission:
        return buy, sell, 0.0, 0.0, 0.0
    return None


@njit(cache=True, nogil=True)
def _block(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    # numpy's pairwise_sum (numpy/_core/src/umath/loops_utils.h.src) for n <= 128, term for term
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _pairwise(a: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    # numpy halves n > 128 recursively (n2 = n / 2 rounded down to a multiple of 8) and
    # adds the halves; the same tree, walked with an explicit stack (numba caches no recursion)
    if n <= 128:
        return _block(a, lo, n)
    stack_lo = np.empty(64, dtype=np.int64)
    stack_n = np.empty(64, dtype=np.int64)
    # 0: split me, 1: my left half is being summed, 2: left done (in `left`), 3: done (in `vals`)
    stack_state = np.zeros(64, dtype=np.int64)
    vals = np.zeros(64)
    left = np.zeros(64)
    top = 0
    stack_lo[0], stack_n[0], stack_state[0] = lo, n, 0
    while True:
        cl, cn, st = stack_lo[top], stack_n[top], stack_state[top]
        n2 = cn // 2
        n2 -= n2 % 8
        if cn <= 128:
            v = _block(a, cl, cn)
        elif st == 0:
            stack_state[top] = 1
            top += 1
            stack_lo[top], stack_n[top], stack_state[top] = cl, n2, 0
            continue
        elif st == 2:
            top += 1
            stack_lo[top], stack_n[top], stack_state[top] = cl + n2, cn - n2, 0
            continue
        else:
            v = vals[top]
        # hand v to the parent: its left half, or its right half (then the parent is done)
        top -= 1
        if top < 0:
            return v
        if stack_state[top] == 1:
            left[top] = v
            stack_state[top] = 2
        else:
            vals[top] = left[top] + v
            stack_state[top] = 3


@njit(cache=True, nogil=True)
def np_sum(a: np.ndarray) -> float:  # pragma: no cover - compiled
    """``a.sum()`` of a contiguous 1-D float64 array as NumPy adds it (pairwise, blocks of 8)."""
    return _pairwise(a, 0, a.shape[0])


@njit(cache=True, nogil=True)
def _kernel(weights, marks, ref_all, capital, buy, sell, per_share, min_cost, per_dollar, record, trip_cap,
            fill_cap):  # pragma: no cover
    n, K, N = weights.shape
    # (bars, trials): the inner loop runs over trials, so a bar's K values are adjacent
    value = np.empty((n, K))
    gross = np.empty((n, K))
    traded = np.zeros((n, K))
    n_tx = np.zeros(K, dtype=np.int64)
    cash = np.full(K, capital)
    pos = np.zeros((K, N))
    # pending orders: a queue per trial and asset of (shares, placing bar)
    pq = np.zeros((QUEUE_DEPTH, K, N))  # slot-major: slot 0 of a trial's assets is one run of memory
    pb = np.zeros((QUEUE_DEPTH, K, N), dtype=np.int64)
    plen = np.zeros((K, N), dtype=np.int64)
    psum = np.zeros((K, N))  # sum of the queue (whole shares: exact in any order)
    npend = np.zeros(K, dtype=np.int64)
    # round trips (metrics.round_trips' loop, fill by fill): position, start bar, cash flow
    tpos = np.zeros((K, N))
    tstart = np.zeros((K, N), dtype=np.int64)
    tcash = np.zeros((K, N))
    # Outputs of unknown length get a fixed capacity and keep counting past it: growing an
    # array inside the loop measured 0.5 s of 1.3 s (400 trials), and a rerun with the exact
    # size (simulate_compiled) is rare and costs one more pass.
    trips = np.empty((trip_cap, 4))  # (trial, asset, open bar, close bar)
    trip_pnl = np.empty((trip_cap, 2))  # (pnl, direction)
    fills = np.empty((fill_cap if record else 0, 6))  # (trial, bar, asset, amount, price, commission)
    n_trips = 0  # past the capacity too
    n_fills = 0
    single = np.ones(K, dtype=np.bool_)  # the open orders all come from one bar
    last_bar = np.full(K, -1, dtype=np.int64)  # the bar that placed the newest open order
    # fill order scratch: (placing bar, asset, slot)
    ob = np.empty(N * QUEUE_DEPTH, dtype=np.int64)
    oa = np.empty(N * QUEUE_DEPTH, dtype=np.int64)
    os_ = np.empty(N * QUEUE_DEPTH, dtype=np.int64)
    has = np.empty(N, dtype=np.bool_)
    pmrow = np.empty(N)
    absrow = np.empty(N)
    listed = np.empty(N, dtype=np.bool_)
    for j in range(n):
        for a in range(N):
            has[a] = not np.isnan(ref_all[j, a])
            listed[a] = marks[j, a] > 0
        for k in range(K):
            # 1. fill the open orders whose asset has a bar, oldest placing bar first, then by asset
            if npend[k] > 0:
                m = 0
                for a in range(N):
                    if has[a]:
                        for s in range(plen[k, a]):
                            ob[m] = pb[s, k, a]
                            oa[m] = a
                            os_[m] = s
                            m += 1
                if not single[k]:
                    # gathered by asset; order by (placing bar, asset) with an in-place insertion
                    # sort (with one placing bar, asset order is already the book's order)
                    for i in range(1, m):
                        kb, ka, ks = ob[i], oa[i], os_[i]
                        h = i - 1
                        while h >= 0 and (ob[h] > kb or (ob[h] == kb and oa[h] > ka)):
                            ob[h + 1], oa[h + 1], os_[h + 1] = ob[h], oa[h], os_[h]
                            h -= 1
                        ob[h + 1], oa[h + 1], os_[h + 1] = kb, ka, ks
                c_k = cash[k]
                for i in range(m):
                    a = oa[i]
                    q = pq[os_[i], k, a]
                    ref = ref_all[j, a]
                    px = ref * (buy if q > 0 else sell)
                    raw = abs(q) * per_share
                    c = (raw if raw > min_cost else min_cost) + abs(q * px) * per_dollar
                    c_k = c_k + -(q * px + c)
                    old = pos[k, a]
                    pos[k, a] = old + q
                    traded[j, k] += abs(q * px)
                    n_tx[k] += 1
                    if record:
                        if n_fills < fill_cap:
                            fills[n_fills, 0] = k
                            fills[n_fills, 1] = j
                            fills[n_fills, 2] = a
                            fills[n_fills, 3] = q
                            fills[n_fills, 4] = px
                            fills[n_fills, 5] = c
                        n_fills += 1
                    # the round-trip bookkeeping of metrics._round_trips_loop
                    told = tpos[k, a]
                    tnew = told + q
                    if abs(tnew) <= 1e-9 * max(abs(told), abs(q)):
                        tnew = 0.0
                    closed = False
                    pnl = 0.0
                    frac = 0.0
                    if told == 0.0:
                        tstart[k, a] = j
                        tcash[k, a] = -q * px - c
                        tpos[k, a] = tnew
                    elif tnew == 0.0 or tnew * told > 0.0:
                        tcash[k, a] += -q * px - c
                        tpos[k, a] = tnew
                        if tnew == 0.0:
                            closed = True
                            pnl = tcash[k, a]
                    else:
                        frac = abs(told) / abs(q)
                        closed = True
                        pnl = tcash[k, a] + told * px - c * frac
                    if closed:
                        if n_trips < trip_cap:
                            trips[n_trips, 0] = k
                            trips[n_trips, 1] = a
                            trips[n_trips, 2] = tstart[k, a]
                            trips[n_trips, 3] = j
                            trip_pnl[n_trips, 0] = pnl
                            trip_pnl[n_trips, 1] = 1.0 if told > 0 else -1.0
                        n_trips += 1
                        if not (tnew == 0.0):  # a flip opens the next trip
                            tstart[k, a] = j
                            tcash[k, a] = -tnew * px - c * (1.0 - frac)
                            tpos[k, a] = tnew
                cash[k] = c_k
                for i in range(m):
                    a = oa[i]
                    if plen[k, a] > 0:
                        npend[k] -= plen[k, a]
                        plen[k, a] = 0
                        psum[k, a] = 0.0
                if npend[k] == 0:
                    single[k] = True
            # 2. value at the marks; 3. size row j (order_target_percents)
            # value = cash + pm.sum() and gross = |pm|.sum() as NumPy sums; the sizing value
            # sums in column order (order_target_percents: sum(map(mul, pos, marks)))
            v = 0.0
            for a in range(N):
                pm = pos[k, a] * (marks[j, a] if listed[a] else 0.0)
                pmrow[a] = pm
                absrow[a] = abs(pm)
                v = pm if a == 0 else v + pm
            c_k = cash[k]
            value[j, k] = c_k + np_sum(pmrow)
            gross[j, k] = np_sum(absrow)
            pv = c_k + v
            pv_finite = np.isfinite(pv)
            for a in range(N):
                w = weights[j, k, a]
                if np.isnan(w):
                    continue
                if w == 0.0 and pv_finite and pos[k, a] + psum[k, a] == 0.0:
                    continue  # flat and staying flat: x is exactly 0 (the division below is the loop's costliest step)
                if listed[a]:
                    x = w * pv / marks[j, a] - (pos[k, a] + psum[k, a])
                elif w != 0.0:
                    return NO_PRICE, j, k, a, value, gross, traded, n_tx, trips[:0], trip_pnl[:0], n_tx, fills[:0]
                else:
                    x = w * pv / 1.0 - (pos[k, a] + psum[k, a])
                if not np.isfinite(x):
                    return BAD_SHARES, j, k, a, value, gross, traded, n_tx, trips[:0], trip_pnl[:0], n_tx, fills[:0]
                # engine.shares.round_shares_array, element by element
                r = np.trunc(x) + 0.0
                d = x - r
                if d >= SNAP_FRACTION:
                    r += 1.0
                elif d <= NEG_SNAP_FRACTION:
                    r -= 1.0
                if r != 0.0:
                    s = plen[k, a]
                    if s == QUEUE_DEPTH:
                        return QUEUE_FULL, j, k, a, value, gross, traded, n_tx, trips[:0], trip_pnl[:0], n_tx, fills[:0]
                    if npend[k] > 0 and last_bar[k] != j:
                        single[k] = False
                    last_bar[k] = j
                    pq[s, k, a] = r
                    pb[s, k, a] = j
                    plen[k, a] = s + 1
                    psum[k, a] += r
                    npend[k] += 1
    n_open = np.zeros(K, dtype=np.int64)
    for k in range(K):
        for a in range(N):
            if tpos[k, a] != 0.0:
                n_open[k] += 1
    return OK, n_trips, n_fills, 0, value, gross, traded, n_tx, trips, trip_pnl, n_open, fills


def _readonly(a: np.ndarray) -> np.ndarray:
    # Bundles from Ray's object store are read-only, local ones writable: numba compiles (and
    # caches) one specialization per flag, so pass every price array read-only and compile once.
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def warm() -> float:
    """Load (or compile) the kernel now with a tiny run; the seconds it took. Workers call it when they start."""
    import time

    t = time.perf_counter()
    simulate_compiled(np.zeros((2, 1, 1)), np.ones((2, 1)), np.ones((2, 1)), 1.0, (1.0, 1.0, 0.0, 0.0, 0.0), False)
    return time.perf_counter() - t


def simulate_compiled(weights: np.ndarray, marks: np.ndarray, ref: np.ndarray, capital: float,
                      costs: tuple[float, float, float, float, float], record_fills: bool) -> tuple:
    """Run the compiled loop; ``(status, bar, trial, asset, value, gross, traded, n_tx, trips, trip_pnl, n_open,
    fills)``.

    ``status`` is :data:`OK`, or :data:`BAD_SHARES` / :data:`NO_PRICE` /
    :data:`QUEUE_FULL` with the bar, trial and asset where the loop stopped.
    """
    buy, sell, per_share, min_cost, per_dollar = costs
    n, K, N = weights.shape
    args = (np.ascontiguousarray(weights, dtype=np.float64), _readonly(marks), _readonly(ref), float(capital),
            float(buy), float(sell), float(per_share), float(min_cost), float(per_dollar), bool(record_fills))
    # Round trips per trial and asset as seen so far in this process (a sweep repeats its
    # strategy), with a margin: a rerun for lack of room costs a whole pass.
    trip_cap = max(1024, int(K * N * max(_TRIPS_SEEN[0], n / 64) * 1.25) + 64)
    fill_cap = max(1024, int(n * K * N * _FILLS_SEEN[0] * 1.25) + 64) if record_fills else 0
    out = _kernel(*args, trip_cap, fill_cap)
    if out[0] == OK and (out[1] > trip_cap or out[2] > fill_cap):
        trip_cap, fill_cap = max(trip_cap, out[1]), max(fill_cap, out[2])
        out = _kernel(*args, trip_cap, fill_cap)
    if out[0] == OK:
        _TRIPS_SEEN[0] = max(_TRIPS_SEEN[0], out[1] / (K * N))
        if record_fills:
            _FILLS_SEEN[0] = max(_FILLS_SEEN[0], out[2] / (n * K * N))
    if out[0] != OK:
        return out
    status, n_trips, n_fills = out[:3]
    value, gross, traded = (np.ascontiguousarray(x.T) for x in out[4:7])  # (trials, bars), as metrics read them
    return (status, 0, 0, 0, value, gross, traded, out[7], out[8][:n_trips], out[9][:n_trips], out[10],
            out[11][:n_fills])
