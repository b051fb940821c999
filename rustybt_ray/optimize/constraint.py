"""Constraints of a parameter space: safe expressions over parameter names (``"fast < slow"``), or callables.

A string is parsed once into an AST and checked node by node: only arithmetic, comparisons,
boolean operators, parameter names and constants are allowed, and every intermediate value
is bounded, so a constraint can neither run code nor hang the driver.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rustybt_ray.errors import SearchSpaceError

__all__ = ["Constraint"]

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
# Every intermediate value is bounded before it is computed, not only one exponent:
# nesting ((9**64)**64)**64 or 'x' * 10**9 would otherwise hang the driver or take
# gigabytes. Constraints compare parameters; they never need numbers or strings near these.
_MAX_EXPONENT = 64
_MAX_INT_BITS = 1024
_MAX_STR_LEN = 10_000


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _bits(value: Any) -> int:
    return int(value).bit_length() if _is_int(value) else 0


def _check_operands(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse an operation whose result would exceed the bounds, before computing it."""
    if isinstance(op, ast.Pow):
        if isinstance(right, (int, float, np.number)) and abs(right) > _MAX_EXPONENT:
            raise SearchSpaceError(f"exponent {right!r} is larger than {_MAX_EXPONENT}")
        if _is_int(left) and _is_int(right) and right > 0 and _bits(left) * int(right) > _MAX_INT_BITS:
            raise SearchSpaceError(f"{left!r} ** {right!r} would have more than {_MAX_INT_BITS} bits")
    elif isinstance(op, ast.Mult):
        text, count = (left, right) if isinstance(left, str) else (right, left)
        if isinstance(text, str):
            if _is_int(count) and len(text) * max(int(count), 0) > _MAX_STR_LEN:
                raise SearchSpaceError(f"a string of {len(text)} characters times {count!r} would be longer "
                                       f"than {_MAX_STR_LEN} characters")
        elif _is_int(left) and _is_int(right) and _bits(left) + _bits(right) > _MAX_INT_BITS:
            raise SearchSpaceError(f"a product of {_bits(left)}-bit and {_bits(right)}-bit integers would have "
                                   f"more than {_MAX_INT_BITS} bits")
    elif isinstance(op, ast.Mod) and isinstance(left, str):
        # printf-style formatting ('%0999999999d' % 1) can allocate without bound.
        raise SearchSpaceError("string formatting with % is not allowed in a constraint")
    elif isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str) \
            and len(left) + len(right) > _MAX_STR_LEN:
        raise SearchSpaceError(f"a string longer than {_MAX_STR_LEN} characters")


def _check_result(value: Any) -> Any:
    if _bits(value) > _MAX_INT_BITS:
        raise SearchSpaceError(f"an intermediate integer has more than {_MAX_INT_BITS} bits")
    if isinstance(value, str) and len(value) > _MAX_STR_LEN:
        raise SearchSpaceError(f"an intermediate string is longer than {_MAX_STR_LEN} characters")
    return value


def _check_node(node: ast.AST, names: Mapping[str, Any], source: str) -> None:
    """Reject, at construction, anything but names of the space, numbers/strings, arithmetic, comparisons, and/or/not."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Expression, ast.Load, ast.And, ast.Or)) or type(sub) in _BINOPS \
                or type(sub) in _CMPOPS or type(sub) in _UNARY:
            continue
        if isinstance(sub, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp)):
            continue  # their operators are checked as their own nodes above
        if isinstance(sub, ast.Name):
            if sub.id not in names:
                raise SearchSpaceError(
                    f"constraint {source!r}: unknown name {sub.id!r}; the space has {', '.join(names)}"
                )
            continue
        if isinstance(sub, ast.Constant) and isinstance(sub.value, (int, float, str)) \
                and not isinstance(sub.value, bool):
            continue
        raise SearchSpaceError(
            f"constraint {source!r}: {type(sub).__name__} is not allowed; use parameter names, numbers, "
            "arithmetic (+ - * / // % **), comparisons (< <= > >= == !=) and and/or/not"
        )


def _evaluate(node: ast.AST, params: Mapping[str, Any]) -> Any:
    """Evaluate an AST that :func:`_check_node` accepted."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, params)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _check_result(params[node.id])
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, params))
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, params), _evaluate(node.right, params)
        _check_operands(node.op, left, right)
        return _check_result(_BINOPS[type(node.op)](left, right))
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, params) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, params)
        for op, comp in zip(node.ops, node.comparators):
            right = _evaluate(comp, params)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    raise AssertionError(f"unchecked node {type(node).__name__}")  # _check_node lets none through


def _check_constant_parts(tree: ast.Expression, source: str) -> None:
    """Evaluate the largest parts without parameter names now, so a bound they break is refused before a sweep."""
    todo: list[ast.AST] = [tree.body]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.BinOp) and not any(isinstance(n, ast.Name) for n in ast.walk(node)):
            try:
                _evaluate(node, {})
            except SearchSpaceError as exc:
                raise SearchSpaceError(f"constraint {source!r}: {exc}") from None
            except (ArithmeticError, TypeError, ValueError, RecursionError):
                pass  # left for evaluation, which reports it with the parameters at hand
            continue
        todo.extend(ast.iter_child_nodes(node))


class Constraint:
    """A compiled constraint: call it with a params dict to get a bool."""

    def __init__(self, source: str | Callable[[Mapping[str, Any]], bool], names: Mapping[str, Any]) -> None:
        self.source = source
        self._tree: ast.Expression | None = None
        if isinstance(source, str):
            try:
                tree = ast.parse(source.strip(), mode="eval")
            except SyntaxError as exc:
                raise SearchSpaceError(f"constraint {source!r} is not a valid expression: {exc.msg}") from None
            except (RecursionError, MemoryError):
                raise SearchSpaceError(f"constraint {source[:80]!r}... is nested too deeply") from None
            _check_node(tree, names, source)
            _check_constant_parts(tree, source)
            self._tree = tree
        elif not callable(source):
            raise SearchSpaceError(f"a constraint must be a string or a callable params -> bool, got {source!r}")
        #: The parameter names the constraint reads (None for a callable: it may read any).
        self.names: frozenset[str] | None = None if self._tree is None else frozenset(
            n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name))

    def __call__(self, params: Mapping[str, Any]) -> bool:
        try:
            if self._tree is not None:
                return bool(_evaluate(self._tree, params))
            return bool(self.source(params))  # type: ignore[operator]
        except SearchSpaceError as exc:
            raise SearchSpaceError(f"constraint {self.source!r} on {dict(params)!r}: {exc}") from None
        except Exception as exc:
            raise SearchSpaceError(f"constraint {self.source!r} failed on {dict(params)!r}: {exc!r}") from exc

    def __repr__(self) -> str:
        return f"Constraint({self.source!r})"
