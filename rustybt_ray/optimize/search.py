"""The ask/tell protocol every search algorithm speaks, and the grid and random searches.

The optimizer calls :meth:`SearchAlgorithm.start` once per run, then alternates
:meth:`~SearchAlgorithm.ask` (hand out new trials) and :meth:`~SearchAlgorithm.tell`
(report a finished trial) until :attr:`~SearchAlgorithm.is_finished`. An algorithm that
must wait for results (a Bayesian sampler) simply returns fewer trials, or none.
A second run of the same optimizer first calls :meth:`~SearchAlgorithm.rewind`.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rustybt_ray.cluster.protocol import STATUSES, TrialStatus
from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.optimize.space import ContinuousParameter, ParameterSpace

DIRECTIONS = ("maximize", "minimize")
__all__ = ["DIRECTIONS", "STATUSES", "GridSearchAlgorithm", "RandomSearchAlgorithm", "SearchAlgorithm",
           "TrialBitmap", "TrialRequest", "TrialStatus"]
# Grid points given to a continuous parameter when the user gave no count; the guide's
# GridSearchAlgorithm(param_space) example relies on it.
DEFAULT_GRID_POINTS = 5


@dataclass(frozen=True)
class TrialRequest:
    """A trial handed out by :meth:`SearchAlgorithm.ask`."""

    number: int
    """0, 1, 2, ... unique within a run, in ask order."""
    params: dict[str, Any]


class TrialBitmap:
    """The set of told trial numbers as one bit each (a growable bytearray): 1 MB holds 8M trials.

    A Python ``set`` of ints costs ~60 bytes a trial; a million-trial sweep would keep
    ~60 MB in the driver for this bookkeeping alone. Supports ``in``, :meth:`add` and ``len``.
    """

    __slots__ = ("_bits", "_count")

    def __init__(self) -> None:
        self._bits = bytearray()
        self._count = 0

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int) or number < 0:
            return False
        byte = number >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (number & 7)))

    def add(self, number: int) -> None:
        """Mark ``number`` (an int >= 0); adding one already there changes nothing."""
        byte = number >> 3
        if byte >= len(self._bits):
            # Doubling keeps the cost of growth amortized O(1) a tell.
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        mask = 1 << (number & 7)
        if not self._bits[byte] & mask:
            self._bits[byte] |= mask
            self._count += 1

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the bitmap itself."""
        return len(self._bits)


class SearchAlgorithm(abc.ABC):
    """Base of all search algorithms: numbering, tell bookkeeping and the best trial so far.

    Subclasses create trials with :meth:`_new_trial` and record results with :meth:`_record`.

    **Threading contract.** An implementation needs no lock of its own, but must not
    assume that every call comes from one thread:

    - :meth:`start`, :meth:`check_objectives`, :meth:`rewind` and :attr:`n_total` are
      called by the thread that called the optimizer's ``run``, before any ask of the
      run and while no other thread touches the algorithm;
    - during the run, :meth:`ask`, :meth:`tell`, :attr:`is_finished` and ``report``
      (Optuna's intermediate values) are called with one lock held (the
      :class:`~rustybt_ray.optimize.trial_source.SearchSource`'s), which serializes every
      call into the algorithm: from the scheduler's thread (the one that called ``run``)
      and, when the class sets ``prefetch_trials > 0`` (expensive asks, such as TPE late
      in a study), also from the ``rustybt-prefetch`` thread that asks ahead while the
      scheduler waits in ``ray.wait``. Never two at once, but not always the same
      thread: no thread-local state, no connection that refuses other threads.
    - after ``run`` returns, no thread of the optimizer calls it again.
    """

    # Class-level defaults so a subclass that skips ``super().__init__()`` still works.
    _objectives: tuple[tuple[str, str], ...] = ()
    _space: ParameterSpace | None = None

    def start(self, space: ParameterSpace | None, objectives: Sequence[tuple[str, str]]) -> None:
        """Called once by the optimizer before the first ask; ``objectives`` are ``(name, direction)`` pairs.

        A space given to the constructor wins over ``space``.
        """
        self._objectives = self.check_objectives(objectives)
        if self._space is None:
            self._space = space

    def check_objectives(self, objectives: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """Raise :class:`SearchSpaceError` if this algorithm cannot search these ``(name, direction)`` pairs.

        Changes nothing (no study is created): the optimizers' ``validate`` calls it
        before Ray starts. Returns the pairs as a tuple of strings.
        """
        objs = tuple((str(n), str(d)) for n, d in objectives)
        for name, direction in objs:
            if direction not in DIRECTIONS:
                raise SearchSpaceError(f"objective {name!r}: direction must be 'maximize' or 'minimize', got {direction!r}")
        return objs

    def rewind(self) -> None:
        """Make the next run search again; the optimizer calls it before every run after the first.

        Grid and random searches start over from their first trial (the same trials
        again); Optuna continues its study for another ``n_trials``. An algorithm that
        does not override this cannot run twice once it asked a trial: it raises
        :class:`SearchSpaceError` (create a new one instead).
        """
        if self.n_asked:
            raise SearchSpaceError(f"{type(self).__name__} cannot run a second time (it does not implement "
                                   "rewind()); create a new algorithm for each run")

    def _reset_bookkeeping(self) -> None:
        """Forget every trial asked and told, and the best so far (for :meth:`rewind`)."""
        for name in ("_n_asked", "_told", "_best_number", "_best_values"):
            self.__dict__.pop(name, None)

    @property
    def objectives(self) -> tuple[tuple[str, str], ...]:
        """The ``(name, direction)`` pairs given to :meth:`start`."""
        return self._objectives

    @property
    def space(self) -> ParameterSpace | None:
        """The parameter space searched, once known."""
        return self._space

    @abc.abstractmethod
    def ask(self, n: int = 1) -> list[TrialRequest]:
        """Up to ``n`` new trials; fewer (even none) when it must wait for results."""

    @abc.abstractmethod
    def tell(self, number: int, values: Sequence[float] | None, status: str,
             metrics: Mapping[str, float] | None = None) -> None:
        """Report trial ``number``: ``status`` "complete" with one value per objective, "failed" with None,
        or "pruned" (stopped early) with its last intermediate value or None.

        ``metrics`` is the trial's whole metrics dict when known (algorithms that apply
        constraints, such as "at least 20 trades", read it); algorithms may ignore it.
        """

    @property
    @abc.abstractmethod
    def is_finished(self) -> bool:
        """True when :meth:`ask` will never return a trial again."""

    @property
    def n_total(self) -> int | None:
        """The total number of trials if known in advance (for progress bars), else None."""
        return None

    @property
    def max_trials(self) -> int | None:
        """An upper bound on the trials of a run, or None if unbounded: :attr:`n_total` when known.

        For decisions that need a size before the run but not an exact one (keeping results
        out of core): a constrained grid too big to count still has its unconstrained size.
        """
        return self.n_total

    # -- bookkeeping shared by subclasses -----------------------------------------------

    @property
    def n_asked(self) -> int:
        """Trials handed out so far."""
        return self.__dict__.get("_n_asked", 0)

    @property
    def n_told(self) -> int:
        """Trials reported back so far."""
        return len(self.__dict__.get("_told", ()))

    @property
    def best_number(self) -> int | None:
        """Number of the best complete trial so far (first objective decides), or None."""
        return self.__dict__.get("_best_number")

    @property
    def best_values(self) -> tuple[float, ...] | None:
        """Objective values of :attr:`best_number`, or None."""
        return self.__dict__.get("_best_values")

    def _new_trial(self, params: dict[str, Any]) -> TrialRequest:
        number = self.n_asked
        self._n_asked = number + 1
        return TrialRequest(number, params)

    def _record(self, number: int, values: Sequence[float] | None, status: str) -> tuple[float, ...] | None:
        """Check a tell and update the best trial; returns the values as floats (None when failed)."""
        told: TrialBitmap = self.__dict__.setdefault("_told", TrialBitmap())
        if not isinstance(number, int) or not 0 <= number < self.n_asked:
            raise SearchSpaceError(f"tell({number!r}): no such trial was asked (asked {self.n_asked})")
        if number in told:
            raise SearchSpaceError(f"tell({number}): trial {number} was already told")
        if status not in STATUSES:
            raise SearchSpaceError(f"tell({number}): status must be one of {', '.join(STATUSES)}, got {status!r}")
        if status != TrialStatus.COMPLETE:
            # Failed, or pruned (stopped early: its value, if any, is an intermediate one
            # and never ranks against complete trials).
            told.add(number)
            return None
        if values is None:
            raise SearchSpaceError(f"tell({number}): a complete trial needs its objective values")
        vals = tuple(float(v) for v in values)
        if self._objectives and len(vals) != len(self._objectives):
            raise SearchSpaceError(
                f"tell({number}): got {len(vals)} values for {len(self._objectives)} objectives {self._objectives}"
            )
        if not vals:
            raise SearchSpaceError(f"tell({number}): a complete trial needs at least one value")
        told.add(number)
        # Only the first objective ranks trials; with none declared, bigger is better.
        maximize = not self._objectives or self._objectives[0][1] == "maximize"
        v = vals[0]
        if not math.isnan(v):
            best = self.best_values
            if best is None or (v > best[0] if maximize else v < best[0]):
                self._best_number, self._best_values = number, vals
        return vals


class GridSearchAlgorithm(SearchAlgorithm):
    """Every combination of the space's grid, in :meth:`ParameterSpace.grid` order.

    ``points`` gives continuous parameters their number of grid points (an int for all,
    or per name); a continuous parameter without one gets 5 and a :class:`UserWarning`.
    """

    def __init__(self, param_space: ParameterSpace | None = None, points: int | Mapping[str, int] | None = None) -> None:
        self._space = param_space
        self._points_arg = points
        self._points: int | dict[str, int] | None = None
        self._iter: Iterator[dict[str, Any]] | None = None
        self._pending: list[dict[str, Any]] = []  # one-item look-ahead, so is_finished is exact
        self._total: int | None = None
        self._counted = False  # n_total may be None after counting (too costly to know)
        if param_space is not None:
            self._prepare(param_space, stacklevel=3)

    def _prepare(self, space: ParameterSpace, stacklevel: int) -> None:
        points = self._points_arg
        if isinstance(points, Mapping):
            # Bad names first, so the error is not preceded by a misleading warning.
            space.grid_size({n: k for n, k in points.items()} | {
                p.name: 2 for p in space if isinstance(p, ContinuousParameter) and p.name not in points
            })
        missing = [
            p.name for p in space
            if isinstance(p, ContinuousParameter) and not (isinstance(points, int) or (isinstance(points, Mapping) and p.name in points))
        ]
        if missing:
            base = dict(points) if isinstance(points, Mapping) else {}
            base.update({name: DEFAULT_GRID_POINTS for name in missing})
            points = base
            hint = ", ".join(f"{n!r}: k" for n in missing)
            warnings.warn(
                f"GridSearchAlgorithm: continuous parameter(s) {', '.join(missing)} have no grid point count; "
                f"using {DEFAULT_GRID_POINTS} evenly spaced values each. Pass points={{{hint}}} to choose.",
                UserWarning,
                stacklevel=stacklevel,
            )
        space.grid_size(points)  # raises now on a bad points argument, not at the first ask
        self._points = points

    def _grid(self) -> Iterator[dict[str, Any]]:
        if self._iter is None:
            if self._space is None:
                raise SearchSpaceError("GridSearchAlgorithm has no parameter space: pass one to the constructor or start()")
            if self._points is None:
                self._prepare(self._space, stacklevel=4)
            self._iter = self._space.grid(self._points)
        return self._iter

    def start(self, space: ParameterSpace | None, objectives: Sequence[tuple[str, str]]) -> None:
        """Store the objectives; take ``space`` if the constructor had none."""
        had_space = self._space is not None
        super().start(space, objectives)
        if not had_space and self._space is not None:
            self._prepare(self._space, stacklevel=3)

    def rewind(self) -> None:
        """Start over from the first grid point: a second run asks the same trials in the same order."""
        self._reset_bookkeeping()
        self._iter = None
        self._pending = []

    def _fill(self) -> None:
        if not self._pending:
            nxt = next(self._grid(), None)
            if nxt is not None:
                self._pending.append(nxt)

    def ask(self, n: int = 1) -> list[TrialRequest]:
        """The next ``n`` grid points (fewer at the end of the grid)."""
        out: list[TrialRequest] = []
        while len(out) < n:
            self._fill()
            if not self._pending:
                break
            out.append(self._new_trial(self._pending.pop()))
        return out

    def tell(self, number: int, values: Sequence[float] | None, status: str,
             metrics: Mapping[str, float] | None = None) -> None:
        """Record a result; the grid does not depend on it."""
        self._record(number, values, status)

    @property
    def is_finished(self) -> bool:
        """True once every grid point was asked."""
        self._fill()
        return not self._pending

    @property
    def n_total(self) -> int | None:
        """Grid points that meet the constraints, counted once without walking the grid; None if too costly.

        See :meth:`ParameterSpace.grid_count`: constraints on plain numbers are counted
        with numpy (10**7 points in well under a second); others point by point up to a
        bound, beyond which the total is unknown (None) and :attr:`max_trials` gives the
        unconstrained size.
        """
        if not self._counted and self._space is not None:
            self._grid()  # resolves points
            self._total = self._space.grid_count(self._points)
            self._counted = True
        return self._total

    @property
    def max_trials(self) -> int | None:
        """:attr:`n_total`, or the grid's size before constraints when the constrained count is unknown."""
        total = self.n_total
        if total is None and self._space is not None:
            return self._space.grid_size(self._points)
        return total


class RandomSearchAlgorithm(SearchAlgorithm):
    """``n_trials`` points drawn uniformly (log-uniformly for ``log`` parameters) under the constraints.

    Trial ``i`` is drawn from ``np.random.default_rng([seed, i])``, so its parameters depend
    only on the seed and ``i``, not on how many trials are asked at once. Also callable as
    ``RandomSearchAlgorithm(n_trials, seed)`` with the space given to :meth:`start`.
    """

    def __init__(
        self,
        param_space: ParameterSpace | int | None = None,
        n_trials: int | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(param_space, int) and not isinstance(param_space, bool):
            # The RandomSearchAlgorithm(n_trials, seed) form: shift the positional arguments.
            if seed is not None and n_trials is not None:
                raise TypeError("RandomSearchAlgorithm(n_trials, seed): too many arguments")
            param_space, n_trials, seed = None, param_space, n_trials if seed is None else seed
        if param_space is not None and not isinstance(param_space, ParameterSpace):
            raise SearchSpaceError(f"param_space must be a ParameterSpace, got {param_space!r}")
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise SearchSpaceError(f"n_trials must be an int >= 1, got {n_trials!r}")
        if seed is None:
            # Fresh entropy, kept, so a run without a seed can still be reproduced from .seed.
            seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SearchSpaceError(f"seed must be an int >= 0, got {seed!r}")
        self._space = param_space
        self.n_trials = n_trials
        self.seed = seed

    def params_for(self, i: int) -> dict[str, Any]:
        """The parameters of trial ``i``, a pure function of (seed, i)."""
        if self._space is None:
            raise SearchSpaceError("RandomSearchAlgorithm has no parameter space: pass one to the constructor or start()")
        return self._space.sample(np.random.default_rng([self.seed, i]))

    def rewind(self) -> None:
        """Start over from trial 0: a second run draws the same points (they depend on the seed and ``i`` only)."""
        self._reset_bookkeeping()

    def ask(self, n: int = 1) -> list[TrialRequest]:
        """The next ``n`` random points (fewer once ``n_trials`` were asked)."""
        count = max(0, min(n, self.n_trials - self.n_asked))
        return [self._new_trial(self.params_for(self.n_asked)) for _ in range(count)]

    def tell(self, number: int, values: Sequence[float] | None, status: str,
             metrics: Mapping[str, float] | None = None) -> None:
        """Record a result; the draws do not depend on it."""
        self._record(number, values, status)

    @property
    def is_finished(self) -> bool:
        """True once ``n_trials`` were asked."""
        return self.n_asked >= self.n_trials

    @property
    def n_total(self) -> int | None:
        """``n_trials``."""
        return self.n_trials
