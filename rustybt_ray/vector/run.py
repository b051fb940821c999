"""Entry points: one vectorized backtest (:func:`run_vector`) and a batch of trials (:func:`run_vector_batch`).

Both return what :func:`rustybt_ray.engine.run.run_metrics` returns, ``(metrics,
returns or None)`` per trial, computed by the same functions (``run.backtest_metrics``,
``metrics.returns_from_values``) from the kernel's per-bar values and fills, after
the same argument checks (``check_run``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.array_cache import ArrayCache, default_cache
from rustybt_ray.engine.costs import CommissionModel, SlippageModel, default_commission, default_slippage
from rustybt_ray.engine.ledger import Transactions
from rustybt_ray.engine.run import backtest_metrics, check_run
from rustybt_ray.errors import StrategyError
from rustybt_ray.metrics import compute_metrics, returns_from_values
from rustybt_ray.vector.kernel import simulate
from rustybt_ray.vector.strategy import VectorStrategy, checked_weights, make_instance



@dataclass(frozen=True)
class VectorRun:
    """One trial's full output: the per-bar equity and gross exposure of bars ``[i0, i1)``, fills, weights."""

    value: np.ndarray
    gross: np.ndarray
    transactions: Transactions
    weights: np.ndarray
    params: dict[str, Any]
    i0: int
    i1: int


def simulate_vector(
    strategy: type[VectorStrategy],
    bundle: Bundle | str = "demo",
    start: Any = None,
    end: Any = None,
    capital_base: float = 100_000.0,
    params_list: Sequence[Mapping[str, Any] | None] = (None,),
    *,
    commission: CommissionModel | None = None,
    slippage: SlippageModel | None = None,
    fill_price: str = "open",
    cache: ArrayCache | None = None,
    engine: str = "auto",
) -> list[VectorRun]:
    """Simulate every parameter set of ``params_list`` in one kernel call; the per-bar accounts of each.

    The arguments are those of ``run_algorithm`` (``params_list`` holds one ``params``
    per trial); costs default to ``PerShare(0.001)`` and ``FixedBasisPointsSlippage(5)``.
    """
    b, i0, i1 = _check(strategy, bundle, start, end, capital_base, fill_price)
    return _simulate_checked(strategy, b, i0, i1, float(capital_base), params_list, commission, slippage,
                             fill_price, cache, engine)


def _simulate_checked(strategy: type[VectorStrategy], b: Bundle, i0: int, i1: int, capital: float,
                      params_list: Sequence[Mapping[str, Any] | None], commission: CommissionModel | None,
                      slippage: SlippageModel | None, fill_price: str,
                      cache: ArrayCache | None, engine: str = "auto") -> list[VectorRun]:
    # The arguments were checked by the caller, once per call however many batches follow.
    cache = cache if cache is not None else default_cache()
    trials = [make_instance(strategy, b, p, cache) for p in params_list]
    ws = [checked_weights(algo, algo.weights()) for algo, _ in trials]
    if not ws:
        return []
    stacked = np.empty((i1 - i0, len(ws), len(b.assets)))
    for k, w in enumerate(ws):
        stacked[:, k, :] = w[i0:i1]
    res = simulate(b, stacked, i0, i1, capital, commission or default_commission(),
                   slippage or default_slippage(), fill_price, record_fills=True, engine=engine)
    assert res.fills is not None
    return [VectorRun(res.value[k], res.gross[k], res.fills[k], ws[k], used, i0, i1)
            for k, (_, used) in enumerate(trials)]


def _weights_stack(strategy: type[VectorStrategy], b: Bundle, i0: int, i1: int,
                   params_list: Sequence[Mapping[str, Any] | None], cache: ArrayCache) -> np.ndarray:
    """The trials' weights rows ``[i0, i1)`` stacked as the kernel takes them, ``(bars, K, assets)``."""
    stacked = np.empty((i1 - i0, len(params_list), len(b.assets)))
    for k, p in enumerate(params_list):
        algo, _ = make_instance(strategy, b, p, cache)
        stacked[:, k, :] = checked_weights(algo, algo.weights())[i0:i1]
    return stacked


def run_vector(
    strategy: type[VectorStrategy],
    bundle: Bundle | str = "demo",
    start: Any = None,
    end: Any = None,
    capital_base: float = 100_000.0,
    params: Mapping[str, Any] | None = None,
    *,
    commission: CommissionModel | None = None,
    slippage: SlippageModel | None = None,
    fill_price: str = "open",
    cache: ArrayCache | None = None,
    with_returns: bool = False,
    engine: str = "auto",
    fractional_shares: bool = False,
) -> tuple[dict[str, float], np.ndarray | None]:
    """One vectorized backtest: ``(metrics, returns or None)``, the numbers of ``run_metrics`` on the same rules.

    ``fractional_shares`` exists to be refused: the kernel trades whole shares only.
    """
    return run_vector_batch(strategy, bundle, start, end, capital_base, [params], commission=commission,
                            slippage=slippage, fill_price=fill_price, cache=cache, with_returns=with_returns,
                            engine=engine, fractional_shares=fractional_shares)[0]


def run_vector_batch(
    strategy: type[VectorStrategy],
    bundle: Bundle | str = "demo",
    start: Any = None,
    end: Any = None,
    capital_base: float = 100_000.0,
    params_list: Sequence[Mapping[str, Any] | None] = (None,),
    *,
    commission: CommissionModel | None = None,
    slippage: SlippageModel | None = None,
    fill_price: str = "open",
    cache: ArrayCache | None = None,
    with_returns: bool = False,
    batch_size: int | None = None,
    engine: str = "auto",
    fractional_shares: bool = False,
) -> list[tuple[dict[str, float], np.ndarray | None]]:
    """Many trials of one strategy, ``batch_size`` per kernel call; ``(metrics, returns or None)`` per trial, in order.

    ``batch_size`` defaults to what ``OptimizationConfig.kernel_memory_mb`` allows
    (``RUSTYBT_KERNEL_MEMORY_MB``; :func:`~rustybt_ray.vector.budget.trials_per_call`).
    ``engine``: ``"auto"`` (the compiled kernel where the cost models allow, else
    NumPy), ``"compiled"`` or ``"numpy"`` (see :func:`~rustybt_ray.vector.kernel.simulate`).
    ``fractional_shares=True`` is refused (a :class:`StrategyError`): the kernel trades whole
    shares; ``run_algorithm(strategy, ..., fractional_shares=True)`` runs the same weights
    through the event engine in fractions.
    """
    if fractional_shares:
        raise StrategyError(
            "fractional_shares=True: the vectorized kernel trades whole shares only; run this strategy with "
            "run_algorithm(..., fractional_shares=True) or run_metrics(..., fractional_shares=True), which run "
            "the same weights through the event engine")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise StrategyError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
    b, i0, i1 = _check(strategy, bundle, start, end, capital_base, fill_price)
    if batch_size is None:
        from rustybt_ray.config import OptimizationConfig
        from rustybt_ray.vector.budget import trials_per_call

        batch_size = trials_per_call(i1 - i0, len(b.assets), OptimizationConfig.from_env().kernel_memory_bytes,
                                     history_bars=b.calendar.shape[0])
    capital = float(capital_base)
    out: list[tuple[dict[str, float], np.ndarray | None]] = []
    params_list = list(params_list)
    cache = cache if cache is not None else default_cache()
    commission = commission or default_commission()
    slippage = slippage or default_slippage()
    ppy = b.periods_per_year
    for lo in range(0, len(params_list), batch_size):
        stacked = _weights_stack(strategy, b, i0, i1, params_list[lo:lo + batch_size], cache)
        res = simulate(b, stacked, i0, i1, capital, commission, slippage, fill_price, record_fills=False,
                       engine=engine)
        del stacked
        for k in range(res.value.shape[0]):
            pv = res.value[k]
            if res.trips is not None:
                # the compiled kernel's summary of the fills: what backtest_metrics reads from them
                metrics = compute_metrics(pv, capital, ppy, gross_exposure=res.gross[k], traded_value=res.traded[k],
                                          trips=res.trips[k], n_transactions=int(res.n_transactions[k]))
            else:
                metrics = backtest_metrics(b, pv, res.gross[k], res.fills[k], i0, i1, capital)
            out.append((metrics, returns_from_values(pv, capital) if with_returns else None))
    return out


def _check(strategy: Any, bundle: Bundle | str, start: Any, end: Any, capital_base: Any,
           fill_price: str) -> tuple[Bundle, int, int]:
    if not (isinstance(strategy, type) and issubclass(strategy, VectorStrategy)):
        raise StrategyError(f"strategy must be a VectorStrategy subclass, got {strategy!r}")
    return check_run(strategy, bundle, start, end, capital_base, fill_price)
