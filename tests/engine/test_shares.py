"""The whole-share rule (``engine/shares.py``): one definition, its scalar and NumPy forms equal everywhere."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from rustybt_ray.engine import shares
from rustybt_ray.engine.shares import NEG_SNAP_FRACTION, SNAP, SNAP_FRACTION, round_shares, round_shares_array

ENGINE = Path(shares.__file__).parent


def _reference(x: float) -> float:
    # The textbook form of the rule: the nearest integer if within 1e-4, else toward zero.
    r = round(x)
    return float(r) if abs(x - r) < 1e-4 else float(math.trunc(x))


def _boundary_cases() -> list[float]:
    xs: list[float] = []
    for k in [0, 1, 2, 7, 10, 999, 10**6, 2**40, 2**51, 2**52 - 1]:
        for base in (k - 1e-4, k + 1e-4, k - 0.5, k + 0.5, k - 0.9999, k + 0.9999, float(k)):
            x = base
            for _ in range(6):
                xs.extend([x, -x])
                x = math.nextafter(x, math.inf)
            x = base
            for _ in range(6):
                x = math.nextafter(x, -math.inf)
                xs.extend([x, -x])
    # x.9999 and -x.9999 exactly, huge values, the smallest doubles, signed zeros
    xs.extend([0.9999, -0.9999, 3.9999, -3.9999, 12345.9999, -12345.9999, 0.99990000001, -0.99990000001])
    xs.extend([2.0**52, 2.0**53, 2.0**53 + 2, 2.0**60, 1e15 + 0.9999, 1e200, -1e200, 1e300, -1e300])
    xs.extend([5e-324, -5e-324, 0.0, -0.0, 1e-5, -1e-5])
    xs.extend(np.random.default_rng(0).normal(0, 1e4, 20_000).tolist())
    xs.extend((np.random.default_rng(1).integers(-10**6, 10**6, 5000) + 0.99990000001).tolist())
    return xs


def test_scalar_form_equals_the_round_form_at_the_boundaries():
    for x in _boundary_cases():
        assert round_shares(x) == _reference(x), x


def test_array_form_equals_scalar_form_bit_for_bit():
    xs = _boundary_cases()
    got = round_shares_array(np.array(xs))
    want = np.array([round_shares(x) for x in xs])
    assert got.dtype == np.float64 and got.shape == want.shape
    # bit for bit, so also the sign of zero: -0.3 gives +0.0 in both forms
    assert (got.view(np.int64) == want.view(np.int64)).all()
    assert not np.signbit(round_shares_array(np.array([-0.3, -0.0]))).any()


def test_array_form_keeps_its_input_and_takes_lists():
    x = np.array([9.99999, -2.5])
    out = round_shares_array(x)
    assert out.tolist() == [10.0, -2.0] and x.tolist() == [9.99999, -2.5]
    assert round_shares_array([1.99995, 0.5]).tolist() == [2.0, 0.0]


@pytest.mark.parametrize("bad,error", [(math.nan, ValueError), (math.inf, OverflowError), (-math.inf, OverflowError)])
def test_non_finite_amounts_are_rejected_alike(bad, error):
    with pytest.raises(error):
        round_shares(bad)
    with pytest.raises(error):
        round_shares_array(np.array([1.0, bad, 2.0]))
    with pytest.raises(ValueError):  # a NaN is reported as such even next to an infinity
        round_shares_array(np.array([math.inf, math.nan]))


def test_constants_are_derived_from_snap():
    assert SNAP == 1e-4 and SNAP_FRACTION == 1.0 - SNAP and NEG_SNAP_FRACTION == -SNAP_FRACTION
    # The inlined test d >= SNAP_FRACTION is |x - round(x)| < SNAP because the double
    # 1 - SNAP is above the real 1 - 1e-4 and its predecessor is below it.
    real = 1 - Fraction(1, 10**4)
    assert Fraction(SNAP_FRACTION) > real > Fraction(math.nextafter(SNAP_FRACTION, 0.0))


def test_no_other_copy_of_the_rule_in_the_engine():
    # The rule's constants appear only in shares.py: every other module imports them.
    pattern = re.compile(r"0\.9999|1e-4|np\.round\(|\bround\(")
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(ENGINE.glob("*.py")) if path.name != "shares.py"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line.split("#")[0])
    ]
    assert offenders == []
