"""One grid sweep on a private local Ray, timed apart from Ray's start (shared by the sweep benchmarks)."""

from __future__ import annotations

import time
from typing import Any


def timed_grid_sweep(strategy: type, bundle: Any, space: Any, workers: int = 2,
                     capital_base: float = 1_000_000.0) -> tuple[Any, float, float]:
    """``(result, startup_s, wall_s)``: the grid of ``space`` on ``workers`` actors, objective Sharpe.

    ``startup_s`` is Ray plus the pool until its actors have imported the package; ``wall_s``
    is the sweep alone. Ray is started here (``address="local"``: never a cluster another
    process started) and shut down before returning.
    """
    import ray

    from rustybt_ray.optimization import GridSearchAlgorithm, OptimizationConfig, ParallelOptimizer, WorkerPool

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        config = OptimizationConfig()
        with WorkerPool(workers, config) as pool:
            pool.info()
            startup_s = time.perf_counter() - t0
            opt = ParallelOptimizer(GridSearchAlgorithm(space), pool=pool, config=config, progress=False)
            t1 = time.perf_counter()
            result = opt.run(strategy, bundle, objective="sharpe", capital_base=capital_base)
            return result, startup_s, time.perf_counter() - t1
    finally:
        ray.shutdown()
