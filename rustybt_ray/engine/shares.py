"""The whole-share rule: how a fractional order amount becomes a number of shares.

Orders are for whole shares, as in zipline: an amount within ``SNAP`` (1e-4) of an
integer is rounded to it, so ``0.1 * 1000 / 10 == 9.999999999`` still buys 10 shares;
any other amount is truncated toward zero. This module is the one definition of the
rule. :func:`round_shares` is the scalar form, :func:`round_shares_array` the NumPy
form (for vectorized sizing), and the engine's hot loops inline the scalar form with
:data:`SNAP_FRACTION` / :data:`NEG_SNAP_FRACTION` (a function call per asset costs as
much as the arithmetic). ``tests/engine/test_shares.py`` checks that every form equals
the textbook ``round()`` form on the boundary cases.

Why truncation plus a correction: ``d = x - trunc(x)`` is exact for every double, and
``|x - (trunc(x) + 1)| < SNAP`` holds exactly when ``d >= SNAP_FRACTION``, because the
double ``1 - SNAP`` (0.9999) is the double nearest to the real 1 - 1e-4 and lies above
it. That is one builtin call fewer than ``round()`` plus ``abs()``.

Fractional shares (``run_algorithm(..., fractional_shares=True)``) use the same rule
on a finer unit: amounts are counted in millionths of a share (``FRACTION_UNITS``),
so :func:`round_fractional` is ``round_shares(x * 1e6) / 1e6``. The ledger keeps
fractional positions on that grid (each position is re-rounded after a fill), so
holdings do not pick up float dust and a target of 0 flattens exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Amounts this close to an integer are rounded to it.
SNAP = 1e-4
#: ``x - trunc(x) >= SNAP_FRACTION``: ``x`` is within ``SNAP`` below the next integer away from zero.
SNAP_FRACTION = 1.0 - SNAP
#: The same test for negative amounts: ``x - trunc(x) <= NEG_SNAP_FRACTION``.
NEG_SNAP_FRACTION = -SNAP_FRACTION

_trunc = math.trunc


def round_shares(x: float) -> float:
    """Whole shares for the amount ``x``: the integer within ``SNAP`` of it, else ``x`` truncated toward zero.

    Raises ``ValueError`` for NaN and ``OverflowError`` for an infinite ``x`` (those of
    ``math.trunc``); callers turn them into an ``OrderError`` naming their argument.
    """
    r = _trunc(x)
    d = x - r
    if d >= SNAP_FRACTION:
        r += 1
    elif d <= NEG_SNAP_FRACTION:
        r -= 1
    return float(r)


def round_shares_array(x: np.ndarray) -> np.ndarray:
    """:func:`round_shares` of each element of a float64 array, equal to it element by element (a new array).

    Raises ``ValueError`` if an element is NaN and ``OverflowError`` if one is
    infinite, as the scalar form does for that element.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        if np.isnan(x).any():
            raise ValueError("cannot convert float NaN to integer (an order amount is NaN)")
        raise OverflowError("cannot convert float infinity to integer (an order amount is infinite)")
    # + 0.0 turns trunc(-0.3) == -0.0 into 0.0, as the scalar form's float(int) does.
    r = np.trunc(x) + 0.0
    d = x - r
    r += d >= SNAP_FRACTION
    r -= d <= NEG_SNAP_FRACTION
    return r


#: With fractional shares, amounts are whole numbers of this many parts of a share.
FRACTION_UNITS = 1_000_000.0


def round_fractional(x: float) -> float:
    """The fractional-share amount for ``x``: :func:`round_shares` in millionths of a share.

    ``0.1234567 -> 0.123456``; ``0.29999999999`` (float error) ``-> 0.3``. Raises as
    :func:`round_shares` does for NaN and infinity.
    """
    return round_shares(x * FRACTION_UNITS) / FRACTION_UNITS


def round_fractional_array(x: np.ndarray) -> np.ndarray:
    """:func:`round_fractional` of each element of a float64 array, equal to it element by element (a new array)."""
    return round_shares_array(np.asarray(x, dtype=np.float64) * FRACTION_UNITS) / FRACTION_UNITS


def share_rounder(fractional: bool) -> Callable[[float], float]:
    """The scalar rounding rule of a run: :func:`round_fractional` with fractional shares, else :func:`round_shares`."""
    return round_fractional if fractional else round_shares
