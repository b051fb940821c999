"""``run_algorithm``: one event-driven backtest of a strategy over a bundle.

A backtest is a pure function of (bundle, strategy class, parameters, date range,
capital, cost models): it keeps no global state, so it can run in any process and
be retried. The event loop is the hot path: per bar it sets the clock, fills open
orders if there are any, runs scheduled functions if any fall on the bar, and calls
``handle_data``. Valuations, returns and metrics are computed once, at the end,
from arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm, pinned_params
from rustybt_ray.engine.array_cache import ArrayCache, default_cache
from rustybt_ray.engine.costs import (
    CommissionModel,
    SlippageModel,
    default_commission,
    default_slippage,
)
from rustybt_ray.engine.ledger import Ledger
from rustybt_ray.engine.result import BacktestResult, carry_forward
from rustybt_ray.engine.rows import row_lists
from rustybt_ray.engine.state import NoBarsYet, RunState
from rustybt_ray.errors import StrategyError
from rustybt_ray.metrics import compute_metrics, returns_from_values, round_trips

FILL_PRICES = ("open", "close")

#: ``checkpoint(step, metrics_so_far) -> stop?``, called at each checkpoint of a run.
Checkpoint = Callable[[int, dict[str, float]], bool]


class TrialPruned(Exception):
    """Raised by :func:`run_metrics` when its ``checkpoint`` callback said stop (a pruner's decision).

    Carries the checkpoint's ``step`` (1, 2, ...), the ``metrics`` of the bars run so
    far and their number, ``bars``.
    """

    def __init__(self, step: int, metrics: dict[str, float], bars: int) -> None:
        super().__init__(f"pruned at checkpoint {step} after {bars} bars")
        self.step, self.metrics, self.bars = step, metrics, bars


def checkpoint_bars(calendar: np.ndarray, i0: int, i1: int, every: str | int = "auto") -> list[int]:
    """Bar indices (exclusive ends) in ``(i0, i1)`` after which a run is judged.

    ``every="year"``: after the last bar of each calendar year; ``"auto"``: after
    years 1, 2, 4, 8, 16, ... (early checkpoints catch bad trials early, later ones are
    spaced out because each costs a round trip to the pruner); an int ``k``: every
    ``k`` bars. The run's own end is never a checkpoint: the trial finishes there anyway.
    """
    if isinstance(every, bool) or not (every in ("year", "auto") or (isinstance(every, int) and every > 0)):
        raise StrategyError(f"checkpoint_every must be 'auto', 'year' or a positive number of bars, got {every!r}")
    if every in ("year", "auto"):
        years = calendar[i0:i1].astype("datetime64[Y]")
        ends = (np.flatnonzero(years[1:] != years[:-1]) + 1 + i0).tolist()
        if every == "auto":
            ends = [e for k, e in enumerate(ends, start=1) if k & (k - 1) == 0]  # k = 1, 2, 4, 8, ...
    else:
        ends = list(range(i0 + int(every), i1, int(every)))
    return [e for e in ends if i0 < e < i1]


def run_algorithm(
    strategy: type[TradingAlgorithm],
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
    fractional_shares: bool = False,
) -> BacktestResult:
    """Backtest ``strategy`` on ``bundle`` from ``start`` to ``end`` (inclusive) and return the result.

    Args:
        strategy: a :class:`TradingAlgorithm` subclass (the class, not an instance).
        bundle: a :class:`Bundle`, or the name of a registered bundle, or ``"demo"``.
        start, end: first and last bar (dates or timestamps; ``None`` = bundle bounds).
            ``history`` may look back before ``start``: bars before it are warm-up data.
        capital_base: starting cash.
        params: parameter values by name; each overrides the strategy's default and
            wins over an assignment in ``initialize``. An unknown name is an error.
        commission, slippage: cost models (defaults: ``PerShare(0.001)`` and
            ``FixedBasisPointsSlippage(5)``); ``set_commission``/``set_slippage`` in
            ``initialize`` override them.
        fill_price: ``"open"`` fills market orders placed at bar t at bar t+1's open;
            ``"close"`` at bar t+1's close. Limit and stop orders follow their own
            rules on the bar's open, high and low (:mod:`rustybt_ray.engine.orders`).
        cache: the :class:`ArrayCache` behind ``self.cached`` (default: a process-wide one).
        fractional_shares: trade fractions of a share, to a millionth
            (:func:`~rustybt_ray.engine.shares.round_fractional`), in every order
            method's sizing, in volume-capped fills and in the ledger's positions;
            whole shares by default.
    """
    state = _simulate(strategy, bundle, start, end, capital_base, params, commission, slippage, fill_price, cache,
                      fractional_shares=fractional_shares)
    algo = state.detach()
    result = _build_result(state, type(algo).__name__)
    algo.analyze(result)
    return result


def run_metrics(
    strategy: type[TradingAlgorithm],
    bundle: Bundle,
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
    checkpoint: Checkpoint | None = None,
    checkpoint_every: str | int = "auto",
    fractional_shares: bool = False,
) -> tuple[dict[str, float], np.ndarray | None]:
    """The same backtest as :func:`run_algorithm`, returning only ``(metrics, returns or None)``.

    This is what sweep workers call: it skips the per-bar tables and ``analyze``,
    and the numbers are identical to ``run_algorithm(...).metrics``.

    ``checkpoint(step, metrics_so_far)`` is called at each of
    :func:`checkpoint_bars` (``checkpoint_every``) with the returns-based metrics
    of the bars run so far (trade statistics such as ``n_trades`` and
    ``turnover`` are NaN there); when it returns True the run stops and raises
    :class:`TrialPruned`.
    """
    state = _simulate(
        strategy, bundle, start, end, capital_base, params, commission, slippage, fill_price, cache,
        checkpoint, checkpoint_every, fractional_shares,
    )
    state.detach()
    b, i0, i1, capital = state.bundle, state.i0, state.i1, state.capital
    v = _valuation(b, state.ledger, i0, i1, capital)
    metrics = backtest_metrics(b, v.value, v.gross, state.ledger.transactions(), i0, i1, capital)
    return metrics, (returns_from_values(v.value, capital) if with_returns else None)


def check_run(
    strategy: Any,
    bundle: Bundle | str,
    start: Any,
    end: Any,
    capital_base: Any,
    fill_price: str = "open",
) -> tuple[Bundle, int, int]:
    """Check a run's arguments without running it; returns the loaded bundle and its bar range ``[i0, i1)``.

    Every check that needs no worker: the strategy class, ``fill_price``, a positive
    finite ``capital_base``, the bundle (loaded by name), readable dates with
    ``start <= end``, and at least one bar between them. Sweeps call it on the
    driver before Ray starts, so a mistake fails once, not once per trial.
    """
    if not (isinstance(strategy, type) and issubclass(strategy, TradingAlgorithm)):
        raise StrategyError(f"strategy must be a TradingAlgorithm subclass, got {strategy!r}")
    if fill_price not in FILL_PRICES:
        raise StrategyError(f"fill_price must be 'open' or 'close', got {fill_price!r}")
    if isinstance(capital_base, bool) or not isinstance(capital_base, (int, float, np.integer, np.floating)):
        raise StrategyError(f"capital_base must be a positive number, got {capital_base!r}")
    if not (math.isfinite(float(capital_base)) and capital_base > 0):
        raise StrategyError(f"capital_base must be a positive number, got {capital_base!r}")
    if isinstance(bundle, Bundle):
        b = bundle
    else:
        from rustybt_ray.data import load_bundle

        b = load_bundle(bundle)
    i0, i1 = b.index_range(start, end)
    if start is not None and end is not None and i1 <= i0 and _reversed(start, end):
        raise StrategyError(f"start {start} is after end {end}; swap them")
    if i1 <= i0:
        raise StrategyError(
            f"no bars between {start} and {end} in bundle {b.name!r} "
            f"({b.calendar[0]!s:.10}..{b.calendar[-1]!s:.10})" if b.calendar.size else f"bundle {b.name!r} is empty"
        )
    return b, i0, i1


def _reversed(start: Any, end: Any) -> bool:
    """Whether ``start`` is after the last instant ``end`` includes (a date-only end includes its whole day)."""
    import pandas as pd

    try:
        s, e = pd.Timestamp(start), pd.Timestamp(end)
    except (ValueError, TypeError):
        return False  # unreadable dates were already refused by index_range
    if e == e.normalize() and (not isinstance(end, str) or len(end.strip()) <= 10):
        e = e + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return bool(s > e)


def _simulate(
    strategy: type[TradingAlgorithm],
    bundle: Bundle | str,
    start: Any,
    end: Any,
    capital_base: float,
    params: Mapping[str, Any] | None,
    commission: CommissionModel | None,
    slippage: SlippageModel | None,
    fill_price: str,
    cache: ArrayCache | None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every: str | int = "auto",
    fractional_shares: bool = False,
) -> RunState:
    """Run the event loop over the whole range (or until a checkpoint says stop); the run's state after it.

    The caller takes the strategy object with ``state.detach()`` (see :meth:`RunState.detach`).
    """
    b, i0, i1 = check_run(strategy, bundle, start, end, capital_base, fill_price)
    if not isinstance(fractional_shares, (bool, np.bool_)):
        raise StrategyError(f"fractional_shares must be True or False, got {fractional_shares!r}")
    pinned = pinned_params(strategy, params)
    algo = strategy()
    capital = float(capital_base)
    ledger = Ledger(len(b.assets), capital, commission or default_commission(), slippage or default_slippage(),
                    fractional=bool(fractional_shares))
    state = RunState(algo, b, ledger, i0, i1, capital, cache if cache is not None else default_cache())
    try:
        _attach(algo, state)
        state.params = _initialize(algo, state, pinned)
        state.book.accepting = True  # the first bar begins: orders are welcome from here on
        fill_block = b.open if fill_price == "open" else b.close
        state.fill_rows = row_lists(b, fill_price)
        if checkpoint is None:
            _loop(algo, b, i0, i1, fill_block)
        else:
            # The same loop run segment by segment: the state carries over, so a run that
            # is never stopped gives exactly the numbers of an unsegmented one.
            # Valuations are appended segment by segment (a bar's value never changes once
            # the clock has passed it), so judging costs O(bars), not O(bars x checkpoints).
            lo = i0
            pvs: list[np.ndarray] = []
            grosses: list[np.ndarray] = []
            for step, hi in enumerate(checkpoint_bars(b.calendar, i0, i1, checkpoint_every), start=1):
                _loop(algo, b, lo, hi, fill_block)
                segment = _valuation(b, ledger, lo, hi, capital)
                pvs.append(segment.value)
                grosses.append(segment.gross)
                lo = hi
                # Returns-based metrics only: trade statistics (round trips) would cost as
                # much as the backtest itself at every checkpoint; they are NaN here.
                so_far = compute_metrics(np.concatenate(pvs), capital, b.periods_per_year,
                                         gross_exposure=np.concatenate(grosses))
                so_far["n_transactions"] = float("nan")
                if checkpoint(step, so_far):
                    raise TrialPruned(step, so_far, hi - i0)
            _loop(algo, b, lo, i1, fill_block)
    except BaseException:
        state.detach()  # no strategy <-> state cycle outlives a failed run either
        raise
    return state


def _attach(algo: TradingAlgorithm, state: RunState) -> None:
    # Set with object.__setattr__ so strategy classes that guard attributes still run.
    b = state.bundle
    object.__setattr__(algo, "_rb", state)
    object.__setattr__(algo, "bundle", b)
    object.__setattr__(algo, "assets", list(b.assets))
    object.__setattr__(algo, "asset", b.assets[0] if b.assets else None)
    # initialize() sees the bar before the run, like zipline's context before the first bar.
    state.data._t = state.i0 - 1


_GUARDED: dict[type, type] = {}


def _initialize(algo: TradingAlgorithm, state: RunState, pinned: dict[str, Any]) -> dict[str, Any]:
    """Run ``initialize`` with the run's parameters pinned; return the parameter values used."""
    cls = type(algo)
    defaults = cls.parameters()
    for name, value in pinned.items():
        object.__setattr__(algo, name, value)
    assigned: set[str] = set()
    if pinned:
        guarded = _GUARDED.get(cls)
        if guarded is None:
            guarded = _GUARDED[cls] = type(cls.__name__, (cls,), {"__setattr__": _pinned_setattr,
                                                                  "__module__": cls.__module__})
        state.pinned = pinned
        state.assigned = assigned
        algo.__class__ = guarded
        try:
            algo.initialize()
        finally:
            algo.__class__ = cls
    else:
        algo.initialize()
    unknown = sorted(set(pinned) - set(defaults) - assigned)
    if unknown:
        known = sorted(set(defaults) | assigned)
        raise StrategyError(
            f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are {', '.join(known) or '(none)'}: declare one as a class attribute (name = default)"
        )
    used = {name: getattr(algo, name, value) for name, value in defaults.items()}
    used.update(pinned)
    return used


def _pinned_setattr(self: TradingAlgorithm, name: str, value: Any) -> None:
    # Only active during initialize(): a pinned parameter keeps the run's value.
    state = self.__dict__["_rb"]
    if name in state.pinned:
        state.assigned.add(name)
        return
    object.__setattr__(self, name, value)


def _loop(algo: TradingAlgorithm, b: Bundle, i0: int, i1: int, fill_block: np.ndarray) -> None:
    state = algo._rb
    data = state.data
    book = state.book
    ledger = state.ledger
    handle_data = algo.handle_data
    btd = algo.before_trading_start if type(algo).before_trading_start is not TradingAlgorithm.before_trading_start \
        else None
    daily = b.frequency == "1d"
    session_first = None
    if btd is not None:
        days = b.sessions
        session_first = np.r_[True, days[1:] != days[:-1]] if not daily else np.ones(len(days), dtype=bool)
        # The run's first bar starts its first session, even when it starts mid-session.
        session_first[state.i0] = True
    scheduled: dict[int, list[Any]] = {}
    for job in state.scheduled:
        for t in (np.flatnonzero(job.mask(b.calendar, daily)[i0:i1]) + i0).tolist():
            scheduled.setdefault(t, []).append(job.func)
    fill_rows = state.fill_rows if state.fill_rows is not None else fill_block
    if session_first is None and not scheduled:  # the usual case: handle_data alone
        for t in range(i0, i1):
            if book._ids:
                book.fill(t, ledger, fill_rows[t])
                state.pv_t = -2
            data._t = t
            handle_data(data)
        return
    for t in range(i0, i1):
        if session_first is not None and session_first[t]:
            data._t = t - 1
            state.btd = 1
            # Before the calendar's first bar there is nothing to show: a view of no bars.
            btd(data if t else NoBarsYet(data))
            state.btd = 0
        if book._ids:
            book.fill(t, ledger, fill_rows[t])
            state.pv_t = -2
        data._t = t
        if t in scheduled:
            for func in scheduled[t]:
                func(data)
        handle_data(data)


class Valuation(NamedTuple):
    """Per-bar accounts of bars ``[i0, i1)``: portfolio value, gross exposure, cash, positions ``(n, N)``, holdings."""

    value: np.ndarray
    gross: np.ndarray
    cash: np.ndarray
    positions: np.ndarray
    holdings: np.ndarray


def _valuation(b: Bundle, ledger: Ledger, i0: int, i1: int, capital: float) -> Valuation:
    """Per-bar portfolio value and gross exposure of bars ``[i0, i1)``, rebuilt from the ledger's fill snapshots."""
    cash, pos = ledger.history(np.arange(i0, i1), capital)
    if not ledger.has_fills:
        # Nothing ever held: the marks below would be all zeros; skip their O(bars x assets) passes.
        zeros = np.zeros(i1 - i0)
        return Valuation(cash + zeros, zeros, cash, pos, zeros.copy())
    held = pos != 0
    marked = np.where(held, pos * np.where(held, b.price[i0:i1], 0.0), 0.0)
    holdings = marked.sum(axis=1)
    gross = np.abs(marked).sum(axis=1)
    return Valuation(cash + holdings, gross, cash, pos, holdings)


def backtest_metrics(b: Bundle, pv: np.ndarray, gross: np.ndarray, tx: Any, i0: int, i1: int,
                     capital: float) -> dict[str, float]:
    """End-of-run metrics of bars ``[i0, i1)`` from per-bar value and gross exposure and the fills.

    The one definition both engines use: the event loop's ``run_metrics`` and the
    vectorized kernel's ``run_vector_batch``.
    """
    n = i1 - i0
    traded = np.bincount(tx.bar - i0, weights=np.abs(tx.amount * tx.price), minlength=n) if len(tx) else np.zeros(n)
    trips = round_trips(tx.bar, tx.asset, tx.amount, tx.price, tx.commission)
    return compute_metrics(pv, capital, b.periods_per_year, gross_exposure=gross, traded_value=traded,
                           trips=trips, n_transactions=len(tx))


def _build_result(state: RunState, strategy_name: str) -> BacktestResult:
    b, i0, i1, capital = state.bundle, state.i0, state.i1, state.capital
    pv, gross, cash, pos, holdings = _valuation(b, state.ledger, i0, i1, capital)
    tx = state.ledger.transactions()
    metrics = backtest_metrics(b, pv, gross, tx, i0, i1, capital)
    returns = returns_from_values(pv, capital)
    dates = b.calendar[i0:i1]
    table: dict[str, Any] = {
        "date": dates,
        "portfolio_value": pv,
        "cash": cash,
        "positions_value": holdings,
        "gross_exposure": gross,
        "returns": returns,
    }
    for name, col in state.recorded.items():
        at = state.recorded_at[name]
        if name in table:
            name = f"recorded_{name}"
        table[name] = carry_forward(col, at)
    transactions = pl.DataFrame({
        "date": b.calendar[tx.bar],
        # gathered in polars: no Python string per fill (a wide rebalance makes millions)
        "symbol": pl.Series(list(b.symbols), dtype=pl.String).gather(tx.asset),
        "amount": tx.amount,
        "price": tx.price,
        "commission": tx.commission,
        "order_id": tx.order_id,
    })
    return BacktestResult(
        metrics=metrics,
        bars=pl.DataFrame(table),
        returns=returns,
        daily_returns=_session_returns(pv, dates, capital) if b.frequency != "1d" else returns,
        transactions=transactions,
        positions=pos,
        params=state.params,
        strategy=strategy_name,
        bundle=b.name,
        bundle_version=b.version,
        start=dates[0],
        end=dates[-1],
        capital_base=capital,
        symbols=b.symbols,
    )


def _session_returns(pv: np.ndarray, dates: np.ndarray, capital: float) -> np.ndarray:
    days = dates.astype("datetime64[D]")
    last_of_session = np.r_[days[1:] != days[:-1], True]
    return returns_from_values(pv[last_of_session], capital)
