"""How many trials one kernel call may hold: the byte budget of a vectorized batch.

The kernel's memory grows linearly with the trials ``K`` of one call. Its per-trial
time falls with ``K`` in the NumPy loop (every bar costs a fixed number of NumPy
calls whatever ``K``) and hardly moves in the compiled one, where ``K`` only spreads
Ray's per-call cost; either way ``K`` is what the budget allows. The budget is
``OptimizationConfig.kernel_memory_mb`` (``RUSTYBT_KERNEL_MEMORY_MB``); the
:class:`~rustybt_ray.cluster.protocol.JobSpec` carries it to the workers, which size
each call with :func:`trials_per_call`.
"""

from __future__ import annotations

from rustybt_ray.errors import ConfigError

#: float64 ``(K, N)`` arrays the kernel keeps per bar besides the weights: positions,
#: the sizing marks' products, the pending order layers (a few), fill prices,
#: commissions, costs and the share counts being sized. An over-estimate on purpose.
STATE_ARRAYS_PER_ASSET = 16

#: Per-bar float64 series per trial: value, gross exposure and the returns built from them.
SERIES_PER_BAR = 3


def trial_bytes(n_bars: int, n_assets: int, *, history_bars: int | None = None) -> int:
    """Working-set bytes of one trial in a kernel call over ``n_bars`` bars of ``n_assets`` assets.

    The stacked ``(n_bars, K, N)`` float64 weights (``n_bars * n_assets * 8``), the
    trial's own ``weights()`` array, which covers the whole bundle (``history_bars``,
    default ``n_bars``, times ``n_assets * 8``), its value/gross/returns series
    (``3 * n_bars * 8``) and the per-asset state (:data:`STATE_ARRAYS_PER_ASSET`).
    """
    for name, v in (("n_bars", n_bars), ("n_assets", n_assets)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
    hist = n_bars if history_bars is None else history_bars
    if isinstance(hist, bool) or not isinstance(hist, int) or hist < n_bars:
        raise ConfigError(f"history_bars must be an int >= n_bars ({n_bars}), got {hist!r}")
    return 8 * (n_bars * n_assets + hist * n_assets + SERIES_PER_BAR * n_bars + STATE_ARRAYS_PER_ASSET * n_assets)


def trials_per_call(n_bars: int, n_assets: int, budget_bytes: int, *, history_bars: int | None = None) -> int:
    """How many trials fit in ``budget_bytes`` (see :func:`trial_bytes`); at least 1.

    At least one: a trial larger than the budget still runs, alone, as it would on
    the event path (the budget bounds batching, it does not refuse work).
    """
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
        raise ConfigError(f"the kernel memory budget must be a positive number of bytes, got {budget_bytes!r}")
    return max(1, budget_bytes // trial_bytes(n_bars, n_assets, history_bars=history_bars))


__all__ = ["trial_bytes", "trials_per_call"]
