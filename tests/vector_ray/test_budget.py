"""The kernel's byte budget: trials_per_call, OptimizationConfig.kernel_memory_mb, JobSpec.kernel_trials (no Ray)."""

from __future__ import annotations

import pytest

from rustybt_ray.cluster.protocol import JobSpec, RouteBy, route_for
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.errors import ConfigError, StrategyError
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverVector
from rustybt_ray.vector.budget import trial_bytes, trials_per_call


def by_hand(bars: int, assets: int, budget: int, history: int | None = None) -> int:
    # stacked weights + the trial's own weights + value/gross/returns + 16 per-asset state arrays, float64
    per = 8 * bars * assets + 8 * (history or bars) * assets + 3 * 8 * bars + 16 * 8 * assets
    return max(1, budget // per)


@pytest.mark.parametrize("bars, assets, budget", [(5031, 8, 256 << 20), (252, 500, 64 << 20), (100, 1, 1 << 20),
                                                  (5031, 8, 1), (1, 1, 10**9)])
def test_trials_per_call_counts_the_working_set(bars, assets, budget):
    assert trials_per_call(bars, assets, budget) == by_hand(bars, assets, budget)
    k = trials_per_call(bars, assets, budget)
    assert k == 1 or k * trial_bytes(bars, assets) <= budget < (k + 1) * trial_bytes(bars, assets)


def test_20_years_of_8_assets_in_256_mib():
    k = trials_per_call(5031, 8, 256 << 20)
    assert 300 < k < 400  # ~0.75 MiB a trial, as the config's docstring says
    assert trials_per_call(5031, 8, 1) == 1  # a trial over the budget still runs, alone
    # A walk-forward segment is short but its weights() cover the whole history.
    assert trials_per_call(250, 8, 64 << 20, history_bars=5031) == by_hand(250, 8, 64 << 20, 5031)
    assert trials_per_call(250, 8, 64 << 20, history_bars=5031) > trials_per_call(5031, 8, 64 << 20)


@pytest.mark.parametrize("args", [(0, 8, 1 << 20), (10, 0, 1 << 20), (10, 8, 0), (10, 8, -5), (10, 8, True),
                                  (10.5, 8, 1 << 20), (10, 8, 2.5)])
def test_trials_per_call_refuses_bad_sizes(args):
    with pytest.raises(ConfigError):
        trials_per_call(*args)
    with pytest.raises(ConfigError, match="history_bars"):
        trials_per_call(100, 8, 1 << 20, history_bars=50)


def test_config_field_and_environment():
    assert OptimizationConfig().kernel_memory_mb == 64.0
    assert OptimizationConfig().kernel_memory_bytes == 64 << 20
    cfg = OptimizationConfig.from_env({"RUSTYBT_KERNEL_MEMORY_MB": "64"})
    assert cfg.kernel_memory_mb == 64.0 and cfg.kernel_memory_bytes == 64 << 20
    assert OptimizationConfig(kernel_memory_mb=1e-9).kernel_memory_bytes == 1  # never 0 bytes
    for bad in (0, -1.0):
        with pytest.raises(ConfigError, match="kernel_memory_mb must be > 0"):
            OptimizationConfig(kernel_memory_mb=bad)
    with pytest.raises(ConfigError, match="RUSTYBT_KERNEL_MEMORY_MB='lots'"):
        OptimizationConfig.from_env({"RUSTYBT_KERNEL_MEMORY_MB": "lots"})
    with pytest.raises(ConfigError, match="kernel_memory_mb must be a finite number"):
        OptimizationConfig(kernel_memory_mb=True)  # type: ignore[arg-type]


def spec(strategy: type, **kw) -> JobSpec:
    return JobSpec("j", strategy, [None], "v", None, None, 1e5, **kw)


def test_jobspec_kernel_trials():
    s = spec(SmaCrossoverVector, kernel_memory_bytes=32 << 20, bundle_shape=(2000, 10))
    assert s.vector and s.kernel_trials() == by_hand(2000, 10, 32 << 20)
    assert spec(SmaCrossoverVector).kernel_trials() is None  # shape unknown
    event = spec(SmaCrossover, bundle_shape=(2000, 10))
    assert not event.vector and event.kernel_trials() is None


class Routed(SmaCrossoverVector):
    route_by = "slow"


class RoutedTwo(SmaCrossoverVector):
    route_by = ("slow", "fast")


class BadRoute(SmaCrossoverVector):
    route_by = "nope"


class BadRouteType(SmaCrossoverVector):
    route_by = 3


def test_route_for():
    assert route_for(SmaCrossoverVector) is None
    r = route_for(Routed)
    assert r == RouteBy(("slow",), (50,))
    assert r({"fast": 5, "slow": 30}) == (30,) and r({"fast": 5}) == (50,)  # the default when a trial omits it
    two = route_for(RoutedTwo)
    assert two({"fast": 5, "slow": 30}) == (30, 5)
    assert RouteBy(("x",), (None,))({"x": [1, 2]}) == ("[1, 2]",)  # unhashable values keyed by repr
    with pytest.raises(StrategyError, match=r"route_by names 'nope', not parameters.*fast, slow"):
        route_for(BadRoute)
    with pytest.raises(StrategyError, match="route_by must be a parameter name"):
        route_for(BadRouteType)
