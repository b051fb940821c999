"""Search spaces, ask/tell search algorithms, the parallel optimizer and its results."""

from rustybt_ray.cluster.protocol import TrialStatus
from rustybt_ray.optimize.objectives import Objective, Objectives
from rustybt_ray.optimize.optimizer import ParallelOptimizer
from rustybt_ray.optimize.optuna_search import BayesianOptimizationAlgorithm, OptunaSearch
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.optimize.search import GridSearchAlgorithm, RandomSearchAlgorithm, SearchAlgorithm, TrialRequest
from rustybt_ray.optimize.space import (
    CategoricalParameter,
    ContinuousParameter,
    DiscreteParameter,
    ParameterSpace,
)
from rustybt_ray.optimize.walk_forward import WalkForwardOptimizer
from rustybt_ray.optimize.walk_forward_result import WalkForwardResult
from rustybt_ray.optimize.windows import WindowConfig

__all__ = [
    "BayesianOptimizationAlgorithm",
    "CategoricalParameter",
    "ContinuousParameter",
    "DiscreteParameter",
    "GridSearchAlgorithm",
    "Objective",
    "Objectives",
    "OptimizationResult",
    "OptunaSearch",
    "ParallelOptimizer",
    "ParameterSpace",
    "RandomSearchAlgorithm",
    "SearchAlgorithm",
    "TrialRequest",
    "TrialStatus",
    "WalkForwardOptimizer",
    "WalkForwardResult",
    "WindowConfig",
]
