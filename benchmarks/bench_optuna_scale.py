"""Optuna at scale (issue 11): TPE's ask cost against study size, and what keeps 2 vector workers busy.

1. ``ask_cost``: ms per ``study.ask`` + ``study.tell`` against the finished trials in the
   study (0 .. 20,000, filled with ``study.add_trials`` of a synthetic objective), two
   int params as the SMA sweep (fast 2..100, slow 5..400), median of ``--reps`` asks
   after one warm-up, as the thread's CPU time (``time.thread_time``: the machine is
   shared, CPU time is what the driver spends) and wall time, for: ``tpe`` (as
   ``OptunaSearch`` builds it: multivariate, constant liar), ``tpe_window500``
   (``history_window=500``, top 25) and ``random``.
2. ``threads``: 2 threads asking TPE at once (each on its own 2,000-trial study) against
   the same asks one after another: the GIL decides whether more ask threads help.
3. ``sweeps``: ``--sweep-trials`` trials of ``SmaCrossoverVector`` on the demo bundle,
   2 Ray workers (one pool, kernels warm), ``OptunaSearch`` seed 0, objective Sharpe, for
   the default TPE, the window, TPE then random from trial 1,000, and random: trials/s,
   worker busy fraction (sum of trial run times / (2 x wall)), best Sharpe found.

Prints one JSON object and writes it to ``benchmarks/results/optuna_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import IntDistribution
from optuna.trial import create_trial

from rustybt_ray.optimize.optuna_scale import WindowedSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
D = {"fast": IntDistribution(2, 100), "slow": IntDistribution(5, 400)}
SIZES = (0, 1000, 2000, 5000, 10000, 20000)
OUT = Path(__file__).resolve().parent / "results" / "optuna_scale.json"


def tpe(seed: int = 0) -> optuna.samplers.BaseSampler:
    """TPE as ``OptunaSearch(sampler="tpe")`` builds it."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


SAMPLERS = {"tpe": tpe, "tpe_window500": lambda: WindowedSampler(tpe(), 500),
            "random": lambda: optuna.samplers.RandomSampler(seed=0)}


def fill(study: optuna.Study, n: int, rng: np.random.Generator) -> None:
    """Add ``n`` complete trials of a smooth synthetic objective."""
    f, s = rng.integers(2, 101, n), rng.integers(5, 401, n)
    study.add_trials([create_trial(params={"fast": int(a), "slow": int(b)}, distributions=D,
                                   value=float(-((a - 20) ** 2) / 100 - ((b - 120) ** 2) / 1e4))
                      for a, b in zip(f, s)])


def time_asks(study: optuna.Study, reps: int) -> tuple[float, float]:
    """Median (cpu ms, wall ms) of ask+tell, after one untimed warm-up ask."""
    t = study.ask(D)
    study.tell(t, 0.0)
    cpu, wall = [], []
    for _ in range(reps):
        c, w = time.thread_time(), time.perf_counter()
        t = study.ask(D)
        study.tell(t, -1.0)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return round(1e3 * statistics.median(cpu), 3), round(1e3 * statistics.median(wall), 3)


def ask_cost(reps: int) -> dict[str, Any]:
    """ms per ask+tell against study size, each sampler on its own copy of the same trials."""
    out: dict[str, Any] = {"sizes": list(SIZES)}
    for name, make in SAMPLERS.items():
        study = optuna.create_study(direction="maximize", sampler=make())
        rng, have, rows = np.random.default_rng(0), 0, []
        for size in SIZES:
            fill(study, size - have, rng)
            have = size
            cpu, wall = time_asks(study, reps)
            have += reps + 1
            rows.append({"trials": size, "cpu_ms": cpu, "wall_ms": wall})
        out[name] = rows
    return out


def threads(reps: int) -> dict[str, Any]:
    """Two TPE studies of 2,000 trials asked by 2 threads at once vs one after another."""
    studies = []
    for seed in (0, 1):
        s = optuna.create_study(direction="maximize", sampler=tpe(seed))
        fill(s, 2000, np.random.default_rng(seed))
        studies.append(s)

    def work(s: optuna.Study) -> None:
        for _ in range(reps):
            t = s.ask(D)
            s.tell(t, 0.0)

    t0 = time.perf_counter()
    for s in studies:
        work(s)
    serial = time.perf_counter() - t0
    ts = [threading.Thread(target=work, args=(s,)) for s in studies]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    both = time.perf_counter() - t0
    return {"asks": 2 * reps, "serial_s": round(serial, 3), "two_threads_s": round(both, 3),
            "speedup": round(serial / both, 2)}


def sweeps(n_trials: int) -> dict[str, Any]:
    """The vector SMA sweep under OptunaSearch variants on a 2-worker pool."""
    import ray

    from rustybt_ray.cluster import WorkerPool
    from rustybt_ray.config import OptimizationConfig
    from rustybt_ray.data import load_bundle
    from rustybt_ray.examples.sma_crossover import SmaCrossoverVector
    from rustybt_ray.optimize import DiscreteParameter, ParallelOptimizer, ParameterSpace
    from rustybt_ray.optimize.optuna_search import OptunaSearch

    space = ParameterSpace([DiscreteParameter("fast", 2, 100), DiscreteParameter("slow", 5, 400)],
                           constraints=["fast < slow"])
    variants = {"tpe": {}, "tpe_window500": {"history_window": 500},
                "tpe_then_random_at_1000": {"switch_at": 1000, "switch_to": "random"}, "random": {"sampler": "random"}}
    bundle = load_bundle("demo")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = OptimizationConfig()
    pool = WorkerPool(2, config, warm_kernel=True)
    out: dict[str, Any] = {"trials": n_trials, "workers": 2, "strategy": "SmaCrossoverVector", "bundle": "demo"}
    try:
        pool.info()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the kernels are loaded before anything is timed
            if all(i["kernel_warm_s"] is not None for i in ray.get([a.info.remote() for a in pool.workers.values()])):
                break
            time.sleep(0.05)
        for name, kw in variants.items():
            algo = OptunaSearch(space, n_trials=n_trials, seed=0, **kw)
            opt = ParallelOptimizer(algo, pool=pool, config=config, progress=False)
            t = time.perf_counter()
            result = opt.run(SmaCrossoverVector, bundle, objective="sharpe")
            wall = time.perf_counter() - t
            table = result.trials
            ran = float(table["duration_s"].fill_null(0.0).sum())
            out[name] = {"wall_s": round(wall, 2), "trials_per_s": round(len(result) / wall, 1),
                         "worker_busy_fraction": round(ran / (2 * wall), 4),
                         "trial_run_ms_median": round(1e3 * float(table["duration_s"].median()), 3),
                         "driver_ms_per_trial": round(1e3 * opt.last_stats.driver_busy_s / len(result), 3),
                         "best_sharpe": round(float(result.best["metrics"]["sharpe"]), 4),
                         "n_complete": result.n_complete}
    finally:
        pool.close()
        ray.shutdown()
    return out


def main() -> None:
    """Run the parts and print and save one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--sweep-trials", type=int, default=3000)
    parser.add_argument("--skip-sweeps", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    res: dict[str, Any] = {"optuna": optuna.__version__, "cpus": os.cpu_count(),
                           "ask_cost": ask_cost(args.reps), "threads": threads(args.reps * 2)}
    if not args.skip_sweeps:
        res["sweeps"] = sweeps(args.sweep_trials)
    res["total_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(res, indent=1)
    print(text)
    OUT.parent.mkdir(exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, OUT)  # temp-then-rename: a killed run leaves the last complete result


if __name__ == "__main__":
    main()
