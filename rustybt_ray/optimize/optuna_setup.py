"""Optuna's samplers by name and storages by URL or file path, for :class:`~rustybt_ray.optimize.optuna_search.OptunaSearch`.

Errors are raised when the search is built, before Ray starts: an unknown sampler, a
sampler that ignores the constraints it was given, a missing optional package, or a
storage that is neither a URL, a journal file nor an Optuna storage.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any

import optuna

from rustybt_ray.errors import SearchSpaceError

__all__ = ["SAMPLER_NAMES", "check_storage", "make_sampler", "resolve_storage"]

SAMPLER_NAMES = ("tpe", "gp", "cmaes", "qmc", "random", "nsga2", "nsga3")
# Optuna 5 samplers that read FrozenTrial.constraints (set with Trial.set_constraint; the
# older constraints_func argument is deprecated since 5.0, so it is not used here).
_CONSTRAINED = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
                "nsga2": optuna.samplers.NSGAIISampler, "nsga3": optuna.samplers.NSGAIIISampler}
SINGLE_OBJECTIVE_SAMPLERS = {"cmaes": optuna.samplers.CmaEsSampler}  # raises on several directions in optuna 5
# Optional packages Optuna imports lazily, at the first sample: checked up front instead.
_NEEDS = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",), "qmc": ("scipy",)}


def make_sampler(sampler: Any, seed: int | None, kwargs: dict[str, Any],
                  constrained: bool) -> optuna.samplers.BaseSampler:
    """The sampler for a name or an instance; errors name the valid choices."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        if kwargs:
            raise SearchSpaceError("sampler_kwargs only apply to a sampler given by name, not to an instance")
        if constrained and not isinstance(sampler, tuple(_CONSTRAINED.values())):
            raise SearchSpaceError(
                f"sampler {type(sampler).__name__} ignores constraints; use TPE, GP, NSGA-II or NSGA-III")
        return sampler
    if sampler not in SAMPLER_NAMES:
        raise SearchSpaceError(
            f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLER_NAMES)} or an optuna.samplers.BaseSampler")
    if constrained and sampler not in _CONSTRAINED:
        raise SearchSpaceError(
            f"sampler {sampler!r} ignores constraints; use one of {', '.join(_CONSTRAINED)} with constraints=")
    missing = [m for m in _NEEDS.get(sampler, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise SearchSpaceError(f"sampler {sampler!r} needs the package(s) {', '.join(missing)}: "
                               f"pip install {' '.join(missing)}")
    args: dict[str, Any] = {"seed": seed}
    if sampler == "tpe":
        args.update(constant_liar=True, multivariate=True)
    elif sampler == "qmc":
        args.update(scramble=True)  # scrambled Sobol: the seed matters, and no point sits on a corner
    args.update(kwargs)
    cls = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
           "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler,
           "random": optuna.samplers.RandomSampler, "nsga2": optuna.samplers.NSGAIISampler,
           "nsga3": optuna.samplers.NSGAIIISampler}[sampler]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**args)
    except (TypeError, ValueError) as exc:
        raise SearchSpaceError(f"sampler {sampler!r}: {exc}") from None


def check_storage(storage: Any) -> None:
    """Raise :class:`SearchSpaceError` unless ``storage`` is something :func:`resolve_storage` takes."""
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return
    if isinstance(storage, (str, os.PathLike)):
        text = os.fspath(storage)
        if "://" in text or text.endswith((".log", ".journal")):
            return
    raise _bad_storage(storage)


def resolve_storage(storage: Any) -> str | optuna.storages.BaseStorage | None:
    """An Optuna storage, a URL left for Optuna, or a journal file for a ``.log``/``.journal`` path."""
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if isinstance(storage, (str, os.PathLike)):
        text = os.fspath(storage)
        if "://" in text:
            return text  # an RDB URL: optuna.create_study builds the RDBStorage
        if text.endswith((".log", ".journal")):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(text))
    raise _bad_storage(storage)


def _bad_storage(storage: Any) -> SearchSpaceError:
    return SearchSpaceError(
        f"storage {storage!r}: give a URL like 'sqlite:///study.db', a journal file path ending in .log "
        "or .journal, or an optuna storage")
