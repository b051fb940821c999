"""Parameter spaces: the values a sweep may give a strategy's parameters.

A :class:`ParameterSpace` holds :class:`DiscreteParameter`, :class:`ContinuousParameter`
and :class:`CategoricalParameter` objects plus constraints, and can enumerate a grid,
draw a random sample, or describe itself as Optuna distributions.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import optuna.distributions as od

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.constraint import Constraint

# Columns of an OptimizationResult's trial table; a parameter with one of these names
# would collide with them, so the space rejects it up front rather than after a sweep.
RESERVED_NAMES = frozenset({"number", "status", "error", "duration_s", "worker", "attempts"})

# Float grids are computed as min + i*step and rounded to this many decimals, so that
# 0.1 + 2*0.1 is 0.3 and not 0.30000000000000004.
_DECIMALS = 12


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise SearchSpaceError(
            f"parameter name {name!r} is not allowed: it must be a public Python identifier (like 'lookback')"
        )
    if name in RESERVED_NAMES:
        raise SearchSpaceError(f"parameter name {name!r} is reserved for a column of the results table")


def _check_number(name: str, what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(f"parameter {name!r}: {what} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class DiscreteParameter:
    """Values ``min_value, min_value + step, ...`` up to and including ``max_value`` when it is on the grid.

    The values are ints when ``min_value`` and ``step`` are ints, floats otherwise.
    """

    name: str
    min_value: int | float
    max_value: int | float
    step: int | float = 1

    def __post_init__(self) -> None:
        _check_name(self.name)
        for what in ("min_value", "max_value", "step"):
            _check_number(self.name, what, getattr(self, what))
        if self.min_value > self.max_value:
            raise SearchSpaceError(
                f"parameter {self.name!r}: empty range, min_value {self.min_value!r} > max_value {self.max_value!r}"
            )
        if self.step <= 0:
            raise SearchSpaceError(f"parameter {self.name!r}: step must be > 0, got {self.step!r}")

    @property
    def is_int(self) -> bool:
        """True when every value is an int."""
        return isinstance(self.min_value, int) and isinstance(self.step, int)

    def __len__(self) -> int:
        if self.is_int:
            return (math.floor(self.max_value) - self.min_value) // self.step + 1
        # The tiny slack keeps (0.3 - 0.1) / 0.1 = 1.9999999999999998 from losing 0.3.
        return int(math.floor((self.max_value - self.min_value) / self.step + 1e-9)) + 1

    def value_at(self, i: int) -> int | float:
        """The ``i``-th value (0-based)."""
        if self.is_int:
            return self.min_value + i * self.step
        return min(round(self.min_value + i * self.step, _DECIMALS), float(self.max_value))

    @property
    def values(self) -> tuple[int | float, ...]:
        """All values, in increasing order."""
        return tuple(self.value_at(i) for i in range(len(self)))

    def axis(self) -> Sequence[int | float]:
        """The values as a lazy sequence (len and indexing, nothing materialized): what grids iterate."""
        if self.is_int:
            return range(self.min_value, math.floor(self.max_value) + 1, self.step)  # type: ignore[arg-type]
        return _LazyAxis(self)

    def sample(self, rng: np.random.Generator) -> int | float:
        """One value drawn uniformly."""
        return self.value_at(int(rng.integers(len(self))))


class _LazyAxis(Sequence):  # type: ignore[type-arg]
    """A float :class:`DiscreteParameter`'s values computed on access, so a long axis costs no memory."""

    def __init__(self, param: DiscreteParameter) -> None:
        self._param, self._len = param, len(param)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._len))]
        if not -self._len <= i < self._len:
            raise IndexError(i)
        return self._param.value_at(i % self._len)


@dataclass(frozen=True)
class ContinuousParameter:
    """A real value in ``[min_value, max_value]``; with ``log=True`` sampled and gridded geometrically."""

    name: str
    min_value: float
    max_value: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        for what in ("min_value", "max_value"):
            _check_number(self.name, what, getattr(self, what))
        if self.min_value > self.max_value:
            raise SearchSpaceError(
                f"parameter {self.name!r}: empty range, min_value {self.min_value!r} > max_value {self.max_value!r}"
            )
        if self.log and self.min_value <= 0:
            raise SearchSpaceError(f"parameter {self.name!r}: log=True needs min_value > 0, got {self.min_value!r}")

    def grid_values(self, points: int) -> tuple[float, ...]:
        """``points`` values evenly spaced (geometrically if ``log``) including both ends."""
        if isinstance(points, bool) or not isinstance(points, int) or points < 1:
            raise SearchSpaceError(f"parameter {self.name!r}: the point count must be an int >= 1, got {points!r}")
        lo, hi = float(self.min_value), float(self.max_value)
        if lo == hi:
            return (lo,)  # a degenerate range has one value, not `points` copies of it
        if points == 1:
            raise SearchSpaceError(f"parameter {self.name!r}: 1 grid point cannot include both ends; give at least 2")
        raw = np.geomspace(lo, hi, points) if self.log else np.linspace(lo, hi, points)
        vals = [round(float(v), _DECIMALS) for v in raw]
        vals[0], vals[-1] = lo, hi  # the ends exactly, whatever the rounding did
        return tuple(vals)

    def sample(self, rng: np.random.Generator) -> float:
        """One value drawn uniformly (log-uniformly if ``log``)."""
        lo, hi = float(self.min_value), float(self.max_value)
        v = math.exp(rng.uniform(math.log(lo), math.log(hi))) if self.log else rng.uniform(lo, hi)
        return min(max(float(v), lo), hi)  # exp(log(x)) may step outside by an ulp


@dataclass(frozen=True)
class CategoricalParameter:
    """One of a fixed sequence of ``choices``, in the given order."""

    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, Sequence):
            raise SearchSpaceError(f"parameter {self.name!r}: choices must be a list or tuple, got {self.choices!r}")
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise SearchSpaceError(f"parameter {self.name!r}: choices are empty")
        for i, a in enumerate(self.choices):
            for b in self.choices[:i]:
                # True == 1 in Python, but as parameter values they are different choices.
                if isinstance(a, bool) == isinstance(b, bool) and a == b:
                    raise SearchSpaceError(f"parameter {self.name!r}: duplicate choice {a!r}")

    def __len__(self) -> int:
        return len(self.choices)

    @property
    def values(self) -> tuple[Any, ...]:
        """The choices."""
        return self.choices

    def sample(self, rng: np.random.Generator) -> Any:
        """One choice drawn uniformly."""
        return self.choices[int(rng.integers(len(self.choices)))]



Parameter = Union[DiscreteParameter, ContinuousParameter, CategoricalParameter]
ConstraintLike = Union[str, Callable[[Mapping[str, Any]], bool]]


class ParameterSpace:
    """An ordered set of parameters and the constraints their values must satisfy together.

    ``constraints`` are callables ``params -> bool`` or expressions such as ``"fast < slow"``
    over the space's names, numbers, arithmetic and comparisons (parsed, never ``eval``-ed).
    """

    def __init__(self, parameters: Sequence[Parameter], constraints: Sequence[ConstraintLike] = ()) -> None:
        params = list(parameters)
        if not params:
            raise SearchSpaceError("a ParameterSpace needs at least one parameter")
        seen: set[str] = set()
        for p in params:
            if not isinstance(p, (DiscreteParameter, ContinuousParameter, CategoricalParameter)):
                raise SearchSpaceError(f"not a parameter: {p!r}")
            if p.name in seen:
                raise SearchSpaceError(f"duplicate parameter name {p.name!r}")
            seen.add(p.name)
        self._params: tuple[Parameter, ...] = tuple(params)
        self._by_name = {p.name: p for p in params}
        self._constraints: tuple[Constraint, ...] = tuple(Constraint(c, self._by_name) for c in constraints)

    # -- container protocol -----------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        return [p.name for p in self._params]

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        """The parameters, in order."""
        return self._params

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        """The compiled constraints (each callable on a params dict)."""
        return self._constraints

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def get(self, name: str) -> Parameter:
        """The parameter called ``name``; :class:`SearchSpaceError` if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise SearchSpaceError(f"no parameter {name!r} in the space; it has {', '.join(self.names)}") from None

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self._params)
        extra = f", constraints={[c.source for c in self._constraints]!r}" if self._constraints else ""
        return f"ParameterSpace([{inner}]{extra})"

    # -- constraints ------------------------------------------------------------------

    def satisfies(self, params: Mapping[str, Any]) -> bool:
        """True when every constraint holds for ``params``."""
        return all(c(params) for c in self._constraints)

    # -- grid -------------------------------------------------------------------------

    def _axes(self, points: int | Mapping[str, int] | None) -> list[Sequence[Any]]:
        if isinstance(points, Mapping):
            for name in points:
                if not isinstance(self.get(name), ContinuousParameter):
                    raise SearchSpaceError(
                        f"points[{name!r}]: only continuous parameters take a point count; "
                        f"{name!r} already has its values"
                    )
        axes: list[Sequence[Any]] = []
        for p in self._params:
            if isinstance(p, ContinuousParameter):
                k = points.get(p.name) if isinstance(points, Mapping) else points
                if k is None:
                    raise SearchSpaceError(
                        f"continuous parameter {p.name!r} needs a number of grid points: "
                        f"pass points={{{p.name!r}: 5}} (or points=5 for every continuous parameter)"
                    )
                axes.append(p.grid_values(k))
            else:
                axes.append(p.axis() if isinstance(p, DiscreteParameter) else p.values)
        return axes

    def grid(self, points: int | Mapping[str, int] | None = None) -> Iterator[dict[str, Any]]:
        """Every combination, in parameter order (the last parameter varies fastest), that meets the constraints.

        Continuous parameters get ``points`` evenly spaced values (an int for all, or per name).
        Lazy: memory stays O(number of parameters) however big the grid (no ``itertools.product``,
        which would copy every axis).
        """
        names, axes = self.names, self._axes(points)
        lens = [len(a) for a in axes]
        index = [0] * len(axes)
        current = [a[0] for a in axes]
        while True:
            params = dict(zip(names, current))
            if self.satisfies(params):
                yield params
            j = len(axes) - 1
            while j >= 0:  # an odometer: bump the last axis, carry into the ones before
                index[j] += 1
                if index[j] < lens[j]:
                    current[j] = axes[j][index[j]]
                    break
                index[j], current[j] = 0, axes[j][0]
                j -= 1
            if j < 0:
                return

    def grid_size(self, points: int | Mapping[str, int] | None = None) -> int:
        """The number of grid combinations before constraints are applied."""
        return math.prod(len(axis) for axis in self._axes(points))

    def grid_count(self, points: int | Mapping[str, int] | None = None) -> int | None:
        """The number of grid points that meet the constraints, without enumerating the grid; None if too costly.

        Constraints are grouped by the parameters they read; parameters no constraint reads
        multiply the count. Each group's sub-grid is counted with numpy in chunks (up to
        :data:`~rustybt_ray.optimize.grid_count.VECTOR_COUNT_LIMIT` points) when every value is a plain number and the
        vectorized result provably equals the scalar one, else point by point (up to
        :data:`~rustybt_ray.optimize.grid_count.STREAM_COUNT_LIMIT` points); beyond those, None (unknown).
        """
        from rustybt_ray.optimize.grid_count import count_group  # it imports this module

        axes = self._axes(points)
        if not self._constraints:
            return math.prod(len(a) for a in axes)
        names = self.names
        groups: list[tuple[set[str], list[Constraint]]] = []
        for c in self._constraints:
            used = set(names) if c.names is None else set(c.names)
            joined = [g for g in groups if g[0] & used]
            for g in joined:
                groups.remove(g)
            groups.append((used.union(*(g[0] for g in joined)), [x for g in joined for x in g[1]] + [c]))
        total = math.prod(len(a) for n, a in zip(names, axes) if not any(n in g[0] for g in groups))
        counts = []
        for used, cons in sorted(groups, key=lambda g: math.prod(len(a) for n, a in zip(names, axes) if n in g[0])):
            order = [c for c in self._constraints if c in cons]  # the space's order, as satisfies() short-circuits
            sub = [(n, a) for n, a in zip(names, axes) if n in used]
            counts.append(count_group(sub, order))
            if counts[-1] == 0:
                return 0
        return None if None in counts else total * math.prod(counts)  # type: ignore[arg-type]

    # -- sampling ---------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, max_tries: int = 1000) -> dict[str, Any]:
        """One point drawn uniformly (log-uniformly for ``log`` parameters) among those meeting the constraints."""
        for _ in range(max_tries):
            params = {p.name: p.sample(rng) for p in self._params}
            if self.satisfies(params):
                return params
        raise SearchSpaceError(
            f"no random point met the constraints {[c.source for c in self._constraints]} in {max_tries} tries; "
            "check that they can be met together, or use a grid search"
        )

    # -- strategies and Optuna --------------------------------------------------------

    def unconfirmed_names(self, strategy_cls: type) -> list[str]:
        """Names of the space that are not class-attribute parameters of ``strategy_cls``.

        A strategy may declare a parameter only by assigning it in ``initialize``, so these
        names are not errors yet: the optimizer confirms them with a dry run.
        """
        get = getattr(strategy_cls, "parameters", None)
        if not callable(get):
            raise SearchSpaceError(f"{strategy_cls!r} has no parameters() method; is it a TradingAlgorithm?")
        known = get()
        return [n for n in self.names if n not in known]

    def to_optuna_distributions(self) -> dict[str, od.BaseDistribution]:
        """Each parameter as the Optuna distribution with exactly the same values."""
        out: dict[str, od.BaseDistribution] = {}
        for p in self._params:
            if isinstance(p, DiscreteParameter):
                last = p.value_at(len(p) - 1)  # Optuna wants high on the step grid
                if p.is_int:
                    out[p.name] = od.IntDistribution(int(p.min_value), int(last), step=int(p.step))
                else:
                    out[p.name] = od.FloatDistribution(float(p.min_value), float(last), step=float(p.step))
            elif isinstance(p, ContinuousParameter):
                out[p.name] = od.FloatDistribution(float(p.min_value), float(p.max_value), log=p.log)
            else:
                out[p.name] = od.CategoricalDistribution(p.choices)
        return out

