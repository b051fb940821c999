"""The guide's import path: ``from rustybt_ray.optimization import ParallelOptimizer, ...``.

Everything here is defined in :mod:`rustybt_ray.optimize` (search, space, results),
:mod:`rustybt_ray.cluster` (pool) and :mod:`rustybt_ray.config`; this package only
gives the names the user guide uses.
"""

from rustybt_ray.cluster.pool import PersistentWorkerPool, WorkerPool
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.optimize import (
    CategoricalParameter,
    ContinuousParameter,
    DiscreteParameter,
    GridSearchAlgorithm,
    OptimizationResult,
    ParallelOptimizer,
    ParameterSpace,
    RandomSearchAlgorithm,
    SearchAlgorithm,
    WalkForwardOptimizer,
    WalkForwardResult,
    WindowConfig,
)

__all__ = [
    "CategoricalParameter",
    "ContinuousParameter",
    "DiscreteParameter",
    "GridSearchAlgorithm",
    "OptimizationConfig",
    "OptimizationResult",
    "ParallelOptimizer",
    "ParameterSpace",
    "PersistentWorkerPool",
    "RandomSearchAlgorithm",
    "SearchAlgorithm",
    "WalkForwardOptimizer",
    "WalkForwardResult",
    "WindowConfig",
    "WorkerPool",
]
