"""What a sweep optimizes: objective names, directions, and how to read each value from a trial's metrics.

An objective is a metric name (its direction comes from
:data:`rustybt_ray.metrics.METRIC_DIRECTIONS`), a callable on the metrics dict (its
value becomes a column named after the function), or a list of these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Union

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.metrics import METRIC_DIRECTIONS

__all__ = ["Objective", "Objectives", "resolve_objective"]

#: What ``objective=`` accepts: a metric name, a callable on the metrics dict, or a list of them.
Objective = Union[str, Callable[[dict[str, float]], float], Sequence[Union[str, Callable[[dict[str, float]], float]]]]


class Objectives:
    """The sweep's objectives: names, directions and how to read each value from a trial's metrics.

    Every check is made here, on construction, so a bad objective fails before Ray starts.
    """

    def __init__(self, objective: Objective, direction: str | Sequence[str] | None = None) -> None:
        items = list(objective) if isinstance(objective, (list, tuple)) else [objective]
        if not items:
            raise SearchSpaceError("objective: give at least one metric name or callable")
        if direction is None or isinstance(direction, str):
            directions: list[str | None] = [direction] * len(items)
        else:
            directions = list(direction)
            if len(directions) != len(items):
                raise SearchSpaceError(f"{len(items)} objectives but {len(directions)} directions")
        self.names: list[str] = []
        self.directions: list[str] = []
        self.callables: dict[str, Callable[[dict[str, float]], float]] = {}
        for i, (obj, d) in enumerate(zip(items, directions)):
            name, d = resolve_objective(obj, d)
            if callable(obj):
                if name in METRIC_DIRECTIONS:
                    raise SearchSpaceError(f"objective callable {name!r} has the name of a metric; rename the function")
                if name == "objective" and len(items) > 1:
                    name = f"objective_{i}"
                self.callables[name] = obj
            if name in self.names:
                raise SearchSpaceError(f"objective {name!r} is given twice")
            self.names.append(name)
            self.directions.append(d)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """``(name, direction)`` for each objective."""
        return list(zip(self.names, self.directions))

    @property
    def sign(self) -> float:
        """+1 when the first objective is maximized, -1 when minimized (``sign * value``: bigger is better)."""
        return 1.0 if self.directions[0] == "maximize" else -1.0

    def add_to(self, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics with each callable objective's value added under its name."""
        if not self.callables:
            return metrics
        out = dict(metrics)
        for name, fn in self.callables.items():
            out[name] = float(fn(metrics))
        return out

    def values(self, metrics: dict[str, float]) -> list[float]:
        """The objective values of a trial (NaN where a metric is missing)."""
        return [float(metrics.get(n, math.nan)) for n in self.names]


def resolve_objective(objective: Any, direction: str | None) -> tuple[str, str]:
    """``(name, direction)`` of one objective: a metric's known direction unless ``direction`` is given."""
    if callable(objective):
        name = getattr(objective, "__name__", "objective")
        if not name.isidentifier():  # a lambda's "<lambda>"
            name = "objective"
        d = direction or "maximize"
    elif isinstance(objective, str):
        if objective not in METRIC_DIRECTIONS:
            raise SearchSpaceError(
                f"unknown objective {objective!r}; use one of {', '.join(sorted(METRIC_DIRECTIONS))} or a callable"
            )
        name = objective
        d = direction or METRIC_DIRECTIONS[objective]
        if d == "none":
            d = "maximize"
    else:
        raise SearchSpaceError(f"objective must be a metric name or a callable, got {objective!r}")
    if d not in ("maximize", "minimize"):
        raise SearchSpaceError(f"direction must be 'maximize' or 'minimize', got {d!r}")
    return name, d
