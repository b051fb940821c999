"""Tuning knobs of an optimization run: :class:`OptimizationConfig`.

Every field can also be set from the environment as ``RUSTYBT_<FIELD_NAME_UPPER>``
(``RUSTYBT_CACHE_SIZE_GB=4``, ``RUSTYBT_ENABLE_CACHING=false``, ...) through
:meth:`OptimizationConfig.from_env`; keyword overrides win over the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rustybt_ray.errors import ConfigError

ENV_PREFIX = "RUSTYBT_"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# Spellings of "no value" for optional fields such as n_workers (None = all cluster CPUs).
_NONE = frozenset({"", "none", "auto"})


@dataclass(frozen=True)
class OptimizationConfig:
    """How a sweep uses caches, the object store, actors and retries. Validated on creation."""

    enable_caching: bool = True
    """Keep a per-actor ArrayCache of derived arrays (indicators) between trials."""
    cache_size_gb: float = 2.0
    """Bound, in GiB, of each actor's ArrayCache."""
    lru_maxsize: int = 128
    """Most entries in each actor's ArrayCache, by count, in addition to the bytes bound."""
    enable_bundle_pooling: bool = True
    """Keep bundles in the BundleStore between runs; when False each run puts and releases them."""
    max_bundle_pool_size: int = 100
    """Most bundles kept in the BundleStore (LRU)."""
    n_workers: int | None = None
    """Actors to start; None means one per cluster CPU."""
    min_batch_seconds: float = 0.2
    """Target seconds of work per actor call; trials are batched to reach it.

    One actor call costs the driver about 1 ms here (submit, wait, fetch); 0.2 s keeps
    that under 0.5 ms per trial for trials of 100 ms, while the last batches of a sweep
    still end within about 0.2 s of each other."""
    max_batch_size: int = 256
    """Most trials in one actor call."""
    batches_in_flight: int = 2
    """Batches queued per actor, so an actor never waits on the driver."""
    max_retries: int = 3
    """Times a trial is retried after its actor died."""
    health_check_interval_s: float = 10.0
    """Seconds between actor liveness checks."""
    worker_start_timeout_s: float = 300.0
    """Seconds a worker may wait for a CPU on a multi-node cluster (for the autoscaler to add a
    node) before the pool drops it and goes on with the workers that started."""
    return_daily_returns: bool = True
    """Workers also send float32 per-bar returns of every trial (4 bytes per bar per trial).

    The overfitting statistics (PBO needs every trial's returns) and the equity plots
    use them; turn off for sweeps of ~100k trials over long histories, where they
    would take gigabytes on the driver."""
    kernel_memory_mb: float = 64.0
    """Bound, in MiB, of one vectorized kernel call's working set on a worker.

    A :class:`~rustybt_ray.vector.VectorStrategy` sweep runs many trials per kernel call;
    this bounds how many, by :func:`rustybt_ray.vector.budget.trials_per_call`: about
    0.75 MiB per trial for 20 years of 8 daily assets, so 64 MiB holds ~85 such trials.
    The compiled kernel's cost per trial hardly depends on that number (0.19-0.22 µs per
    bar and trial from 1 to 512 trials a call, ``benchmarks/RESULTS.md``), so a small
    budget costs only Ray's ~1 ms per call, and keeps two workers' peaks in the tens of MiB."""

    spill_trials: int | None = 20_000
    """A sweep that will run at least this many trials (known up front: a grid, a random search,
    an Optuna ``n_trials``) keeps its results out of core, in a
    :class:`~rustybt_ray.optimize.store.ResultStore` under ``results_dir``, as if it were run with
    ``store=``; None never does. Held in memory, a trial costs the driver about 15 KB (10 KB of it
    float32 returns over 10 years of daily bars), so 20,000 trials are ~300 MB; on disk the driver
    stays flat whatever the count (``benchmarks/RESULTS.md``)."""
    results_dir: str | None = None
    """Where sweeps spilled by ``spill_trials`` put their stores (a new directory each); None: the
    system's temporary directory. A store holds ~10 KB a trial on disk for 10 years of daily bars."""

    store_commit_s: float = 5.0
    """Seconds between a results store's commits (also every 16,384 trials): what a driver
    that dies can lose, and rerun when the sweep is resumed."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), _KINDS[f.name])
        _positive(self, "cache_size_gb")
        _positive(self, "lru_maxsize")
        _positive(self, "max_bundle_pool_size")
        if self.n_workers is not None:
            _positive(self, "n_workers")
        _positive(self, "min_batch_seconds")
        _positive(self, "max_batch_size")
        _positive(self, "batches_in_flight")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries!r}")
        _positive(self, "health_check_interval_s")
        _positive(self, "worker_start_timeout_s")
        _positive(self, "kernel_memory_mb")
        _positive(self, "store_commit_s")
        if self.spill_trials is not None:
            _positive(self, "spill_trials")

    @property
    def cache_size_bytes(self) -> int:
        """``cache_size_gb`` in bytes (GiB, 2**30)."""
        return int(self.cache_size_gb * (1 << 30))

    @property
    def kernel_memory_bytes(self) -> int:
        """``kernel_memory_mb`` in bytes (MiB, 2**20), at least 1."""
        return max(1, int(self.kernel_memory_mb * (1 << 20)))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> OptimizationConfig:
        """A config from ``RUSTYBT_<FIELD>`` variables of ``env`` (default ``os.environ``), then ``overrides``.

        Raises :class:`ConfigError` naming the variable, its value and the expected form
        when a variable is malformed, and naming the field for an unknown override.
        """
        env = os.environ if env is None else env
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ConfigError(f"unknown OptimizationConfig field(s): {', '.join(unknown)}; known: {', '.join(names)}")
        values: dict[str, Any] = {}
        for name in names:
            var = ENV_PREFIX + name.upper()
            if var in env:
                values[name] = _parse(var, env[var], _KINDS[name])
        values.update(overrides)
        return cls(**values)


# The parse/check kind of each field. Kept explicit rather than read from annotations,
# which are strings under ``from __future__ import annotations``.
_KINDS: dict[str, str] = {
    "enable_caching": "bool",
    "cache_size_gb": "float",
    "lru_maxsize": "int",
    "enable_bundle_pooling": "bool",
    "max_bundle_pool_size": "int",
    "n_workers": "int?",
    "min_batch_seconds": "float",
    "max_batch_size": "int",
    "batches_in_flight": "int",
    "max_retries": "int",
    "health_check_interval_s": "float",
    "worker_start_timeout_s": "float",
    "return_daily_returns": "bool",
    "kernel_memory_mb": "float",
    "spill_trials": "count?",
    "results_dir": "str?",
    "store_commit_s": "float",
}

_EXPECTED = {
    "bool": "one of true/false/1/0/yes/no/on/off",
    "int": "an integer",
    "int?": "an integer, or none/auto for all cluster CPUs",
    "float": "a finite number",
    "str?": "a directory path, or none",
    "count?": "an integer, or none (never)",
}


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _parse_opt_int(text: str) -> int | None:
    return None if text.strip().lower() in _NONE else int(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "bool": _parse_bool,
    "int": int,
    "int?": _parse_opt_int,
    "count?": _parse_opt_int,
    "float": _parse_float,
    "str?": lambda text: None if text.strip().lower() in _NONE else text,
}


def _parse(var: str, text: str, kind: str) -> Any:
    try:
        return _PARSERS[kind](text)
    except ValueError:
        raise ConfigError(f"environment variable {var}={text!r} is malformed: expected {_EXPECTED[kind]}") from None


def _check_type(name: str, value: Any, kind: str) -> None:
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind in ("int", "int?", "count?"):
        # bool is an int subclass, but True workers is a mistake, not 1 worker.
        ok = (kind != "int" and value is None) or (isinstance(value, int) and not isinstance(value, bool))
    elif kind == "str?":
        ok = value is None or (isinstance(value, str) and bool(value))
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ConfigError(f"{name} must be {_EXPECTED[kind]}, got {value!r}")


def _positive(cfg: OptimizationConfig, name: str) -> None:
    value = getattr(cfg, name)
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
