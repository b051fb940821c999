"""Pre-flight checks of a sweep: everything that needs no worker, before Ray starts or anything is written.

A mistake in a sweep's arguments (``start`` after ``end``, a capital of ``"abc"``, a
parameter the strategy lacks, an unknown bundle) would otherwise fail every trial
with the same traceback. :func:`check_sweep` finds it once, on the driver, and
returns what the run needs (the loaded bundle and its bars) so nothing is loaded twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm
from rustybt_ray.engine.costs import CommissionModel, SlippageModel
from rustybt_ray.engine.run import check_run, run_metrics
from rustybt_ray.errors import SearchSpaceError, StrategyError
from rustybt_ray.optimize.objectives import Objectives
from rustybt_ray.optimize.space import ParameterSpace

__all__ = ["Preflight", "check_sweep", "dry_run"]


@dataclass
class Preflight:
    """What a validated sweep needs to run: the loaded bundle, its bars ``[i0, i1)``, objectives and pruning."""

    bundle: Bundle
    i0: int
    i1: int
    objectives: Objectives
    space: ParameterSpace | None
    pruning: dict[str, Any] | None = None
    #: Walk-forward only: the windows of the run.
    windows: list[Any] | None = None
    #: Walk-forward only: each window's search algorithm, fresh for the run.
    algorithms: list[Any] = field(default_factory=list)


def check_sweep(
    strategy: Any,
    bundle: Bundle | str,
    start: Any,
    end: Any,
    *,
    capital_base: Any,
    fill_price: str,
    commission: Any,
    slippage: Any,
    space: ParameterSpace | None,
) -> tuple[Bundle, int, int]:
    """Check a sweep's run arguments and its parameter names; returns ``(bundle, i0, i1)``.

    Raises a :class:`~rustybt_ray.errors.RustyBTError` (``StrategyError``,
    ``BundleNotFoundError``, ``SearchSpaceError``) on the first problem found.
    """
    b, i0, i1 = check_run(strategy, bundle, start, end, capital_base, fill_price)
    if commission is not None and not isinstance(commission, CommissionModel):
        raise StrategyError(f"commission must be a CommissionModel (PerShare, PerDollar, ...), got {commission!r}")
    if slippage is not None and not isinstance(slippage, SlippageModel):
        raise StrategyError(f"slippage must be a SlippageModel (FixedBasisPointsSlippage, ...), got {slippage!r}")
    dry_run(strategy, b, i0, space)
    return b, i0, i1


def dry_run(strategy: type[TradingAlgorithm], b: Bundle, i0: int, space: ParameterSpace | None) -> None:
    """Check the space's parameter names by running ``initialize`` and bar ``i0`` on the driver.

    Only names the strategy's class attributes do not confirm need the run (a name may
    be assigned in ``initialize``). Any other exception of that one bar is left to the
    trials, which report their own errors.
    """
    if space is not None:
        from rustybt_ray.metrics import METRIC_DIRECTIONS

        clash = sorted(set(space.names) & set(METRIC_DIRECTIONS))
        if clash:
            # The results table has one column per parameter and per metric: caught here,
            # not after the whole sweep has run and its table is built.
            raise SearchSpaceError(f"parameter name {clash[0]!r} is also a metric (a column of the results "
                                   f"table); rename the parameter (e.g. {clash[0] + '_param'!r})")
    if space is None or not space.unconfirmed_names(strategy):
        return
    # Any point of the space will do: only the names are checked here.
    try:
        probe = space.sample(np.random.default_rng(0))
    except SearchSpaceError:  # constraints too tight to sample: take the first grid point
        probe = next(space.grid(points=2), None)
        if probe is None:
            return
    try:
        run_metrics(strategy, b, b.calendar[i0], b.calendar[i0], params=probe)
    except StrategyError as exc:
        raise SearchSpaceError(f"the parameter space does not fit {strategy.__name__}: {exc}") from None
    except Exception:  # noqa: BLE001 - only the names are checked here; trials report their own errors
        pass
