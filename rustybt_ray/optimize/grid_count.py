"""Counting a grid's points under constraints without enumerating the grid.

:meth:`ParameterSpace.grid_count <rustybt_ray.optimize.space.ParameterSpace.grid_count>` uses
this: a sweep of 10**7 grid points needs its size (progress bar, batch sizing, the decision
to keep results out of core) before the first trial, and walking the grid with the scalar
constraint evaluator takes ~2 us a point.
"""

from __future__ import annotations

import ast
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rustybt_ray.optimize.constraint import _BINOPS, _CMPOPS, _MAX_EXPONENT

if TYPE_CHECKING:
    from rustybt_ray.optimize.constraint import Constraint


class _NoVector(Exception):
    """The vectorized count cannot promise the scalar evaluation's answer here; count point by point."""


# float64 holds every int up to 2**53 exactly, so int arithmetic below it matches Python's.
_EXACT = float(2 ** 53)
# Grid counting with constraints: points evaluated per numpy chunk (memory ~ a few arrays of
# this many float64s), and the most points counted vectorized (~25 ns each) or one by one
# (~2 us each) before the count is given up as unknown.
_COUNT_CHUNK = 1 << 15
VECTOR_COUNT_LIMIT = 400_000_000
STREAM_COUNT_LIMIT = 1_000_000


def _vector(node: ast.AST, cols: Mapping[str, tuple[np.ndarray, str] | None]) -> tuple[Any, str]:
    """Evaluate a checked constraint AST on float64 columns: (value, kind), kind "int", "float" or "bool".

    Only where the result provably equals :func:`_evaluate` on every point: numbers only,
    ints below 2**53, no float error (errstate raises), boolean values never used as numbers;
    anything else raises :class:`_NoVector`.
    """
    if isinstance(node, ast.Expression):
        return _vector(node.body, cols)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) or abs(node.value) > _EXACT:
            raise _NoVector
        return float(node.value), "int" if isinstance(node.value, int) else "float"
    if isinstance(node, ast.Name):
        col = cols[node.id]
        if col is None:
            raise _NoVector
        return col
    if isinstance(node, ast.BoolOp):
        parts = [_truth(*_vector(v, cols)) for v in node.values]
        return (np.logical_and if isinstance(node.op, ast.And) else np.logical_or).reduce(parts), "bool"
    if isinstance(node, ast.UnaryOp):
        value, kind = _vector(node.operand, cols)
        if isinstance(node.op, ast.Not):
            return np.logical_not(_truth(value, kind)), "bool"
        if kind == "bool":
            raise _NoVector
        return (-value if isinstance(node.op, ast.USub) else value), kind
    if isinstance(node, ast.Compare):
        left, kind = _vector(node.left, cols)
        out: Any = True
        for op, comp in zip(node.ops, node.comparators):
            right, rkind = _vector(comp, cols)
            if "bool" in (kind, rkind):
                raise _NoVector
            out = np.logical_and(out, _CMPOPS[type(op)](left, right))
            left, kind = right, rkind
        return out, "bool"
    assert isinstance(node, ast.BinOp)
    (left, lk), (right, rk) = _vector(node.left, cols), _vector(node.right, cols)
    if "bool" in (lk, rk):
        raise _NoVector
    if isinstance(node.op, ast.Pow) and np.any(np.abs(right) > _MAX_EXPONENT):
        raise _NoVector  # the scalar path refuses it with its own error
    value = _BINOPS[type(node.op)](left, right)
    kind = "int" if lk == rk == "int" and not isinstance(node.op, ast.Div) else "float"
    if kind == "int" and isinstance(node.op, ast.Pow) and np.any(right < 0):
        kind = "float"  # Python: int ** negative int is a float
    if kind == "int" and np.any(np.abs(value) > _EXACT):
        raise _NoVector
    return value, kind


def _truth(value: Any, kind: str) -> Any:
    return value if kind == "bool" else np.not_equal(value, 0)  # bool(nan) is True, as nan != 0


def _column_source(axis: Sequence[Any]) -> Callable[[np.ndarray], tuple[np.ndarray, str]] | None:
    """A function from point indices to the axis' values there (float64) and their kind; None if not plain numbers.

    A column with any int is "int", so results computed from it get the 2**53 exactness check.
    """
    if isinstance(axis, range):
        if max(abs(axis.start), abs(axis.stop)) > _EXACT:
            return None
        start, step = float(axis.start), float(axis.step)
        return lambda index: (start + index * step, "int")
    if len(axis) > _COUNT_CHUNK:
        return None  # a long float axis would have to be materialized
    values = list(axis)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= _EXACT for v in values):
        return None
    kind = "int" if any(isinstance(v, int) for v in values) else "float"
    arr = np.asarray(values, dtype=np.float64)
    return lambda index: (arr[index], kind)


def count_group(sub: list[tuple[str, Sequence[Any]]], constraints: Sequence[Constraint]) -> int | None:
    """Points of the product of ``sub``'s axes meeting every constraint (which read only those names)."""
    size = math.prod(len(a) for _, a in sub)
    if size <= VECTOR_COUNT_LIMIT and all(c.names is not None for c in constraints):
        sources = {n: _column_source(a) for n, a in sub}
        if all(src is not None for src in sources.values()):
            shape = tuple(len(a) for _, a in sub)
            count = 0
            try:
                with np.errstate(all="raise"):
                    for start in range(0, size, _COUNT_CHUNK):
                        flat = np.arange(start, min(size, start + _COUNT_CHUNK))
                        cols = {n: sources[n](i) for n, i in zip(sources, np.unravel_index(flat, shape))}  # type: ignore[misc]
                        ok: Any = True
                        for c in constraints:
                            ok = np.logical_and(ok, _truth(*_vector(c._tree, cols)))  # type: ignore[arg-type]
                        count += int(np.count_nonzero(np.broadcast_to(ok, flat.shape)))
                return count
            except (_NoVector, FloatingPointError, ValueError, TypeError, ZeroDivisionError, OverflowError):
                pass  # the scalar evaluation decides (and raises what it raises)
    if size > STREAM_COUNT_LIMIT:
        return None
    names = [n for n, _ in sub]
    return sum(1 for combo in itertools.product(*(a for _, a in sub))
               if all(c(dict(zip(names, combo))) for c in constraints))
