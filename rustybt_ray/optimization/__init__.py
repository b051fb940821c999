"""The guide's import path: ``from rustybt_ray.optimization import ParallelOptimizer, ...``.

Everything here is defined in :mod:`rustybt_ray.optimize` (search, space, results),
:mod:`rustybt_ray.cluster` (pool) and :mod:`rustybt_ray.config`; this package only
gives the names the user guide uses.
"""

from rustybt_ray.cluster.pool import PersistentWorkerPool, WorkerPool
from rustybt_ray.config import OptimizationConfig
from rustybt_ray.optimize import (
    BayesianOptimizationAlgorithm,
    CategoricalParameter,
    ContinuousParameter,
    DiscreteParameter,
    GridSearchAlgorithm,
    OptimizationResult,
    OptunaSearch,
    ParallelOptimizer,
    ParameterSpace,
    RandomSearchAlgorithm,
    SearchAlgorithm,
    WalkForwardOptimizer,
    WalkForwardResult,
    WindowConfig,
)

__all__ = [
    "BayesianOptimizationAlgorithm",
    "CategoricalParameter",
    "ContinuousParameter",
    "DiscreteParameter",
    "GridSearchAlgorithm",
    "OptimizationConfig",
    "OptimizationResult",
    "OptunaSearch",
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
