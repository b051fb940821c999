"""Vectorized strategies: target weights for every bar at once, simulated for many trials per call.

See :mod:`rustybt_ray.vector.strategy` for the front end, :mod:`.kernel` for the
accounting (the event engine's, proven equal in ``tests/vector``) and :mod:`.run`
for the entry points.
"""

from rustybt_ray.vector import indicators
from rustybt_ray.vector.kernel import KernelResult, simulate
from rustybt_ray.vector.run import VectorRun, run_vector, run_vector_batch, simulate_vector
from rustybt_ray.vector.strategy import VectorStrategy

__all__ = ["KernelResult", "VectorRun", "VectorStrategy", "indicators", "run_vector", "run_vector_batch",
           "simulate", "simulate_vector"]
