"""ParallelOptimizer starts a local Ray when none is running (a fresh process), and shows progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, ray
from rustybt_ray.examples.sma_crossover import SmaCrossover
from rustybt_ray.optimization import DiscreteParameter, GridSearchAlgorithm, ParallelOptimizer, ParameterSpace
assert not ray.is_initialized()
space = ParameterSpace(parameters=[DiscreteParameter("fast", 5, 15, 5), DiscreteParameter("slow", 40, 40, 1)])
result = ParallelOptimizer(GridSearchAlgorithm(space), n_jobs=1, progress=True).run(
    SmaCrossover, "demo", "2019-01-01", "2019-12-31")
print(json.dumps({"initialized": ray.is_initialized(), "complete": result.n_complete}))
ray.shutdown()
"""


def test_starts_local_ray_when_none_is_running_and_shows_progress():
    # RAY_ADDRESS=local: the ray.init() the optimizer makes must start a new local Ray, never
    # join another one that happens to run on this machine.
    env = {**os.environ, "RAY_ADDRESS": "local"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"initialized": True, "complete": 3}
    assert "3/3" in proc.stderr and "trials (sharpe)" in proc.stderr  # tqdm's bar: done/total
