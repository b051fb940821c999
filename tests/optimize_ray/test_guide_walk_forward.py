"""The guide's Walk Forward Optimization example, run as written (rustybt -> rustybt_ray)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from guide_user import MyStrategy, register_my_bundle


@pytest.fixture()
def my_bundle(tmp_path, monkeypatch):
    register_my_bundle(tmp_path, monkeypatch, "2017-06-01")


def test_guide_walk_forward_example(ray_session, my_bundle):
    from rustybt_ray.optimization import ContinuousParameter, DiscreteParameter, ParameterSpace

    # The parameter space of the guide's grid search example, which this one reuses.
    param_space = ParameterSpace(parameters=[
        DiscreteParameter(name='lookback', min_value=10, max_value=100, step=10),
        ContinuousParameter(name='threshold', min_value=0.001, max_value=0.1),
    ])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        from rustybt_ray.optimization import WalkForwardOptimizer, WindowConfig

        # Configure walk forward windows
        window_config = WindowConfig(
            train_period_days=252,    # 1 year training
            validation_period_days=63,  # 3 months validation
            test_period_days=63,       # 3 months test
            step_size_days=63,         # Roll forward 3 months
            window_type='rolling',
        )

        # Create optimizer (optimizations enabled by default)
        wf_optimizer = WalkForwardOptimizer(
            param_space=param_space,
            window_config=window_config,
            n_jobs=8,
        )

        # Run walk forward
        results = wf_optimizer.run(
            strategy=MyStrategy,
            bundle='my_bundle',
            start_date='2018-01-01',
            end_date='2023-12-31',
        )
    # The grid's continuous parameter got its default points, with a warning given once, not per window.
    assert sum("threshold" in str(w.message) for w in caught) == 1

    # 252 + 63 + 63 trading sessions per window (the guide's "1 year", "3 months"), rolled
    # by 63 sessions over the 1,509 sessions of 2018-2023: (1509 - 378) // 63 + 1 windows.
    assert results.windows.height == 18
    assert (results.windows["status"] == "ok").all()
    assert all(len(r) == 10 * 5 and r.n_complete == 50 for r in results.train_results)
    assert results.validation.height == 18 * 5
    assert set(results.windows["lookback"].to_list()) <= set(range(10, 101, 10))
    days = results.oos_returns["date"]
    assert days[0] == results.windows["test_start"][0] and days[-1] == results.windows["test_end"][-1]
    # The first test starts 252 + 63 sessions after 2018-01-02: on 2019-04-04.
    assert str(days[0])[:10] == "2019-04-04" and days[-1].year == 2023
    assert all(len(w.train) == 252 and len(w.test) == 63 for w in results.window_specs)
    assert results.oos_returns.height == sum(len(w.test) for w in results.window_specs)
    assert np.isfinite(results.oos_metrics["total_return"])
    print(results.summary())
