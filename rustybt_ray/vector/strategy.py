"""``VectorStrategy``: a strategy that states its target weights for every bar at once.

A strategy in ten lines::

    from rustybt_ray.vector import VectorStrategy, run_vector

    class SmaCross(VectorStrategy):
        fast = 10                           # parameters: class attributes, as TradingAlgorithm
        slow = 50

        def weights(self):                  # (T, N): row t is the target weight at bar t
            up = self.sma(self.fast) > self.sma(self.slow)
            return np.where(up, 1.0 / self.n_assets, 0.0)

    metrics, returns = run_vector(SmaCross, "demo", params={"fast": 20}, with_returns=True)

Row ``t`` of ``weights()`` is what ``order_target_percents`` would be asked at bar
``t`` (a NaN entry: leave that asset alone at that bar); the kernel sizes it with
bar ``t``'s portfolio value and fills at bar ``t + 1``. Indicators (``self.sma``,
``self.ema``, ...) are trailing and served from the worker's :class:`ArrayCache`, so
trials sharing a window compute it once.

In a sweep, ``route_by = "slow"`` (a parameter name, or a tuple of them) sends the
trials that share those parameters to one worker, so the indicator they pick is
computed once per sweep rather than once per worker.

``VectorStrategy`` subclasses :class:`TradingAlgorithm`: parameters and their
pinning are the event engine's, and ``run_algorithm`` (so every sweep) runs a
``VectorStrategy`` unchanged through the event loop, one ``order_target_percents``
call per bar from the same weights. The vectorized kernel gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine.algorithm import TradingAlgorithm, pinned_params
from rustybt_ray.engine.array_cache import ArrayCache
from rustybt_ray.engine.bar_data import BarData
from rustybt_ray.errors import StrategyError, WeightsError
from rustybt_ray.vector import indicators as ind


class VectorStrategy(TradingAlgorithm):
    """Base class of vectorized strategies: override :meth:`weights`.

    Inside ``weights`` the whole history is available: ``self.close`` (and ``open``,
    ``high``, ``low``, ``volume``, ``price``) as ``(T, N)`` arrays over the bundle's
    calendar, ``self.bundle``, ``self.assets``, ``self.n_assets``,
    ``self.calendar``, and the cached indicators below. Compute only trailing
    quantities: row ``t`` of the weights must depend on rows ``<= t``.
    """

    # -- the user hook ------------------------------------------------------------------

    def weights(self) -> np.ndarray:
        """Target weights ``(T, N)`` for every bar of the bundle (NaN: no order for that asset at that bar)."""
        raise NotImplementedError(f"{type(self).__name__} must define weights(self) -> (T, N) array")

    # -- data -------------------------------------------------------------------------

    @property
    def close(self) -> np.ndarray:
        """Closes, ``(T, N)``, NaN where an asset has no bar."""
        return self.bundle.close

    @property
    def open(self) -> np.ndarray:
        """Opens, ``(T, N)``."""
        return self.bundle.open

    @property
    def high(self) -> np.ndarray:
        """Highs, ``(T, N)``."""
        return self.bundle.high

    @property
    def low(self) -> np.ndarray:
        """Lows, ``(T, N)``."""
        return self.bundle.low

    @property
    def volume(self) -> np.ndarray:
        """Volumes, ``(T, N)``."""
        return self.bundle.volume

    @property
    def price(self) -> np.ndarray:
        """Closes forward-filled (the marks), ``(T, N)``; NaN before an asset's first bar."""
        return self.bundle.price

    @property
    def n_assets(self) -> int:
        """Number of assets (columns)."""
        return len(self.bundle.assets)

    @property
    def calendar(self) -> np.ndarray:
        """Bar timestamps, ``(T,)`` ``datetime64[ns]``."""
        return self.bundle.calendar

    # -- cached indicators ------------------------------------------------------------

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> np.ndarray:
        """A derived array shared by the trials of this process, keyed by ``key`` and the bundle version."""
        cache: ArrayCache | None = self.__dict__.get("_vcache")
        if cache is None:
            return super().cached(key, compute)  # in the event loop: the run's cache
        return cache.get_or_compute((self.bundle.version, key), compute)

    def _field(self, field: str) -> np.ndarray:
        try:
            return self.bundle.field(field)
        except Exception:
            raise StrategyError(f"unknown field {field!r}; use open, high, low, close, volume or price") from None

    def _ind(self, name: str, fn: Callable[..., np.ndarray], window: int, field: str) -> np.ndarray:
        return self.cached(("vector", name, int(window), field), lambda: fn(self._field(field), int(window)))

    def sma(self, window: int, field: str = "close") -> np.ndarray:
        """Trailing simple moving average of ``field`` (cached)."""
        return self._ind("sma", ind.sma, window, field)

    def ema(self, window: int, field: str = "close") -> np.ndarray:
        """Exponential moving average of ``field`` (cached; see :func:`indicators.ema`)."""
        return self._ind("ema", ind.ema, window, field)

    def rolling_std(self, window: int, field: str = "close") -> np.ndarray:
        """Trailing population standard deviation of ``field`` (cached)."""
        return self._ind("std", ind.rolling_std, window, field)

    def rolling_min(self, window: int, field: str = "close") -> np.ndarray:
        """Trailing minimum of ``field`` (cached)."""
        return self._ind("min", ind.rolling_min, window, field)

    def rolling_max(self, window: int, field: str = "close") -> np.ndarray:
        """Trailing maximum of ``field`` (cached)."""
        return self._ind("max", ind.rolling_max, window, field)

    def returns(self, window: int = 1, field: str = "close") -> np.ndarray:
        """Trailing ``window``-bar return of ``field`` (cached)."""
        return self._ind("returns", ind.returns, window, field)

    def rsi(self, window: int = 14, field: str = "close") -> np.ndarray:
        """Relative strength index of ``field`` (cached; Cutler's, simple means)."""
        return self._ind("rsi", ind.rsi, window, field)

    def zscore(self, window: int, field: str = "close") -> np.ndarray:
        """Trailing z-score of ``field`` (cached)."""
        return self._ind("zscore", ind.zscore, window, field)

    crossover = staticmethod(ind.crossover)
    crossunder = staticmethod(ind.crossunder)
    rank = staticmethod(ind.rank)

    # -- the event-driven form: the same weights through the event loop ----------------

    def initialize(self) -> None:
        """Compute the weights once (the run's parameters are pinned by then)."""
        object.__setattr__(self, "_vweights", checked_weights(self, self.weights()))

    def handle_data(self, data: BarData) -> None:
        """Place this bar's row of weights with one ``order_target_percents`` call (NaN entries skipped)."""
        row = self._vweights[data.bar_index]
        keep = ~np.isnan(row)
        if keep.all():
            self.order_target_percents(row)
        elif keep.any():
            cols = np.flatnonzero(keep)
            self.order_target_percents(row[cols], assets=[self.assets[c] for c in cols.tolist()])


def checked_weights(strategy: VectorStrategy, w: Any) -> np.ndarray:
    """``w`` as a float64 ``(T, N)`` array for the strategy's bundle; a :class:`WeightsError` naming the problem."""
    b = strategy.bundle
    shape = (b.calendar.shape[0], len(b.assets))
    name = type(strategy).__name__
    if not isinstance(w, np.ndarray):
        try:
            w = np.asarray(w)
        except Exception:
            raise WeightsError(f"{name}.weights() must return an array, got {type(w).__name__}") from None
    if w.dtype.kind not in "biuf":
        raise WeightsError(f"{name}.weights() must return numbers, got dtype {w.dtype}")
    if w.shape != shape:
        raise WeightsError(
            f"{name}.weights() returned shape {w.shape}; it must be (bars, assets) = {shape}, one row per bar "
            "of the bundle's calendar and one column per asset"
        )
    w = w.astype(np.float64, copy=False)
    if np.isinf(w).any():
        t, a = np.argwhere(np.isinf(w))[0]
        raise WeightsError(
            f"{name}.weights() is infinite for {b.assets[a].symbol} at {b.calendar[t]!s:.10} (bar {t})"
        )
    return w


def make_instance(strategy: type[VectorStrategy], bundle: Bundle, params: Mapping[str, Any] | None,
                  cache: ArrayCache) -> tuple[VectorStrategy, dict[str, Any]]:
    """An instance of ``strategy`` on ``bundle`` with the run's parameters pinned; also the parameters used.

    The rules of ``run_algorithm``: the names must be parameters of the strategy
    (class attributes) and may not hide the API; there is no ``initialize`` in the
    vectorized path, so every parameter is a class attribute.
    """
    if not (isinstance(strategy, type) and issubclass(strategy, VectorStrategy)):
        raise StrategyError(f"strategy must be a VectorStrategy subclass, got {strategy!r}")
    pinned = pinned_params(strategy, params)
    defaults = strategy.parameters()
    clash = sorted(n for n in pinned if hasattr(VectorStrategy, n))
    if clash:
        raise StrategyError(f"parameter {clash[0]!r} would hide VectorStrategy.{clash[0]}; rename the parameter")
    unknown = sorted(set(pinned) - set(defaults))
    if unknown:
        raise StrategyError(
            f"{strategy.__name__} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are {', '.join(sorted(defaults)) or '(none)'}: declare one as a class attribute "
            "(name = default)"
        )
    algo = strategy()
    for name, value in pinned.items():
        object.__setattr__(algo, name, value)
    object.__setattr__(algo, "bundle", bundle)
    object.__setattr__(algo, "assets", list(bundle.assets))
    object.__setattr__(algo, "asset", bundle.assets[0] if bundle.assets else None)
    object.__setattr__(algo, "_vcache", cache)
    used = dict(defaults)
    used.update(pinned)
    return algo, used


__all__ = ["VectorStrategy", "checked_weights", "make_instance"]
