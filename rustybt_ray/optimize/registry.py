"""The search algorithms by name: one registry for sweep files and walk-forward.

::

    algo = build_algorithm("tpe", space, {"n_trials": 200, "seed": 0, "pruner": "median"})
    factory = window_factory("tpe", {"n_trials": 50, "constraints": [("n_trades", ">=", 5)]})
    WalkForwardOptimizer(space, windows, algorithm=factory)

``options`` are the keys of a sweep file's ``[search]`` table (``algorithm`` aside):
``n_trials``, ``timeout``, ``seed``, ``points``, ``pruner``, ``storage``,
``study_name``, ``constraints``, ``enqueue``. An option the algorithm cannot use is
refused with a :class:`~rustybt_ray.errors.SearchSpaceError` naming it, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.search import GridSearchAlgorithm, RandomSearchAlgorithm, SearchAlgorithm
from rustybt_ray.optimize.space import ParameterSpace

__all__ = ["ALGORITHMS", "OPTUNA_ALGORITHMS", "OPTIONS", "build_algorithm", "window_factory"]

#: A registry entry: ``(space, options) -> SearchAlgorithm``.
Factory = Callable[[ParameterSpace, Mapping[str, Any]], SearchAlgorithm]

#: Every option any algorithm takes (the ``[search]`` keys besides ``algorithm``).
OPTIONS = ("n_trials", "timeout", "seed", "points", "pruner", "storage", "study_name", "constraints", "enqueue")
# Options that are not the algorithm's: the run reads them.
_RUN_OPTIONS = frozenset({"checkpoint_every"})


def _with_pruner(algo: SearchAlgorithm, o: Mapping[str, Any]) -> SearchAlgorithm:
    # The optimizers prune with the algorithm's ``pruner`` attribute when run() names none.
    if o.get("pruner") is not None:
        from rustybt_ray.optimize.pruning import make_pruner

        algo.pruner = make_pruner(o["pruner"])  # type: ignore[attr-defined]
    return algo


def _grid(space: ParameterSpace, o: Mapping[str, Any]) -> SearchAlgorithm:
    return _with_pruner(GridSearchAlgorithm(space, points=o.get("points")), o)


def _random(space: ParameterSpace, o: Mapping[str, Any]) -> SearchAlgorithm:
    return _with_pruner(RandomSearchAlgorithm(space, n_trials=o.get("n_trials"), seed=o.get("seed")), o)


def _optuna(sampler: str) -> Factory:
    def make(space: ParameterSpace, o: Mapping[str, Any]) -> SearchAlgorithm:
        from rustybt_ray.optimize.optuna_search import OptunaSearch

        constraints = [tuple(c) for c in o["constraints"]] if o.get("constraints") else None
        study_name = o.get("study_name", "sweep") if o.get("storage") else o.get("study_name")
        return OptunaSearch(space, sampler=sampler, n_trials=o.get("n_trials"), timeout=o.get("timeout"),
                            seed=o.get("seed"), storage=o.get("storage"), study_name=study_name,
                            constraints=constraints, pruner=o.get("pruner"), enqueue=o.get("enqueue"))
    make.__name__ = f"optuna_{sampler}"
    return make


#: Name -> (factory, the options it takes).
_REGISTRY: dict[str, tuple[Factory, frozenset[str]]] = {
    "grid": (_grid, frozenset({"points", "pruner"})),
    "random": (_random, frozenset({"n_trials", "seed", "pruner"})),
}
_OPTUNA_OPTIONS = frozenset(OPTIONS) - {"points"}
for _name, _sampler in (("tpe", "tpe"), ("gp", "gp"), ("cmaes", "cmaes"), ("qmc", "qmc"), ("nsga2", "nsga2"),
                        ("nsga3", "nsga3"), ("optuna-random", "random")):
    _REGISTRY[_name] = (_optuna(_sampler), _OPTUNA_OPTIONS)

#: The algorithm names, in the order messages list them.
ALGORITHMS: tuple[str, ...] = tuple(_REGISTRY)
#: The names backed by an Optuna sampler.
OPTUNA_ALGORITHMS: tuple[str, ...] = tuple(n for n in ALGORITHMS if n not in ("grid", "random"))


def options_of(name: str) -> frozenset[str]:
    """The options algorithm ``name`` takes."""
    _entry(name)
    return _REGISTRY[name][1]


def _entry(name: str) -> tuple[Factory, frozenset[str]]:
    if name not in _REGISTRY:
        raise SearchSpaceError(f"unknown search algorithm {name!r}; use one of {', '.join(ALGORITHMS)}")
    return _REGISTRY[name]


def _check_options(name: str, options: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    given = {k: v for k, v in options.items() if v is not None and k not in _RUN_OPTIONS and k != "algorithm"}
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise SearchSpaceError(f"unknown search option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    unused = sorted(set(given) - allowed)
    if unused:
        raise SearchSpaceError(f"search algorithm {name!r} does not take {', '.join(unused)}")
    return given


def build_algorithm(name: str, space: ParameterSpace, options: Mapping[str, Any] | None = None) -> SearchAlgorithm:
    """The search algorithm ``name`` over ``space``, configured by ``options`` (see the module docstring)."""
    factory, allowed = _entry(name)
    return factory(space, _check_options(name, options or {}, allowed))


def window_factory(name: str, options: Mapping[str, Any] | None = None) -> Callable[[ParameterSpace], SearchAlgorithm]:
    """A ``space -> SearchAlgorithm`` factory for walk-forward: one fresh algorithm per window.

    Per-window options (``pruner``, ``constraints``, ``enqueue``, ``seed``, ...) apply
    to every window. ``storage`` and ``study_name`` are refused: each window runs
    its own in-memory study, and windows sharing one stored study would mix (and
    resume) each other's trials.
    """
    factory, allowed = _entry(name)
    given = _check_options(name, options or {}, allowed)
    shared = sorted({"storage", "study_name"} & set(given))
    if shared:
        raise SearchSpaceError(f"walk-forward does not support {' and '.join(shared)}: each window runs its own "
                               "in-memory study; remove it")
    def make(space: ParameterSpace) -> SearchAlgorithm:
        return factory(space, given)

    make.__name__ = f"{name}_per_window"
    return make
