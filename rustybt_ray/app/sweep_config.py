"""Sweep files: one TOML file that says everything about a sweep, for ``rustybt-ray optimize``.

::

    strategy = "rustybt_ray.examples.sma_crossover:SmaCrossover"   # or "path/to/file.py:Class"
    bundle = "demo"
    start = "2012-01-01"
    end = "2024-12-31"
    output = "results/sma"
    fractional_shares = false      # optional: true trades fractions of a share (event-engine strategies)

    [space.parameters]
    fast = { type = "int", low = 5, high = 50, step = 5 }
    slow = { type = "int", low = 20, high = 200, step = 10 }
    [space]
    constraints = ["fast < slow"]

    [search]
    algorithm = "tpe"          # grid, random, tpe, gp, cmaes, qmc, nsga2, nsga3, optuna-random
    n_trials = 200
    seed = 0

    [objective]
    metric = "sharpe"

Every key is checked: an unknown one, a wrong type or a bad value is a
:class:`ConfigError` that names the key (``search.n_trails: unknown key; did you
mean 'n_trials'?``). See ``examples/*.toml`` for complete files.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rustybt_ray.errors import ConfigError, RustyBTError
from rustybt_ray.optimize.registry import ALGORITHMS, OPTUNA_ALGORITHMS

__all__ = ["ALGORITHMS", "OPTUNA_ALGORITHMS", "SweepConfig"]

_TOP = {"strategy", "bundle", "start", "end", "capital", "fill_price", "fractional_shares", "output", "workers",
        "address", "costs", "space", "search", "objective", "walk_forward", "config"}
_COSTS = {"commission", "slippage"}
_SPACE = {"parameters", "constraints"}
_SEARCH = {"algorithm", "n_trials", "timeout", "seed", "points", "pruner", "checkpoint_every", "storage",
           "study_name", "constraints", "enqueue"}
_OBJECTIVE = {"metric", "metrics", "direction", "directions"}
_WALK = {"train_period_days", "validation_period_days", "test_period_days", "step_size_days", "window_type",
         "unit", "purge_days", "top_k"}
_PARAM = {"type", "low", "high", "step", "log", "choices"}
_CONFIG = {"min_batch_seconds", "max_batch_size", "batches_in_flight", "max_retries", "cache_size_gb",
           "enable_caching", "return_daily_returns"}


def _unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(allowed))}"
            raise ConfigError(f"{where}{key}: unknown key{hint}")


def _get(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None,
         required: bool = False) -> Any:
    if key not in table:
        if required:
            raise ConfigError(f"{where}{key}: missing (required)")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{where}{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


@dataclass
class SweepConfig:
    """A parsed, checked sweep file. Build with :meth:`from_toml` or :meth:`from_dict`."""

    strategy: str
    bundle: str = "demo"
    start: str | None = None
    end: str | None = None
    capital: float = 100_000.0
    fill_price: str = "open"
    #: trade fractions of a share (event-engine strategies only; see ``ParallelOptimizer.run``)
    fractional_shares: bool = False
    output: Path = Path("sweep-results")
    workers: int | None = None
    address: str | None = None
    commission: dict[str, Any] | None = None
    slippage: dict[str, Any] | None = None
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    constraints: list[str] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)
    objective: list[str] = field(default_factory=lambda: ["sharpe"])
    directions: list[str] | None = None
    walk_forward: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> SweepConfig:
        """Read and check a sweep file; relative ``output`` and strategy paths are relative to the file."""
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"sweep file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(raw, base=path.parent, source=path)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], base: Path | None = None, source: Path | None = None) -> SweepConfig:
        """Check a sweep given as a dict (the TOML document)."""
        _unknown(raw, _TOP, "")
        base = base or Path.cwd()
        strategy = _get(raw, "strategy", str, "", required=True)
        module, sep, _ = strategy.rpartition(":")
        if sep and (module.endswith(".py") or "/" in module) and not Path(module).is_absolute():
            strategy = str(base / module) + strategy[len(module):]
        out = Path(_get(raw, "output", str, "", "sweep-results"))
        cfg = cls(
            strategy=strategy,
            bundle=_get(raw, "bundle", str, "", "demo"),
            start=_date(raw, "start"),
            end=_date(raw, "end"),
            capital=_get(raw, "capital", float, "", 100_000.0),
            fill_price=_get(raw, "fill_price", str, "", "open"),
            fractional_shares=_flag(raw, "fractional_shares"),
            output=out if out.is_absolute() else base / out,
            workers=_get(raw, "workers", int, ""),
            address=_get(raw, "address", str, "") or None,
            source=source,
        )
        if cfg.fill_price not in ("open", "close"):
            raise ConfigError(f"fill_price: must be 'open' or 'close', got {cfg.fill_price!r}")
        if cfg.capital <= 0:
            raise ConfigError(f"capital: must be > 0, got {cfg.capital!r}")
        if cfg.workers is not None and cfg.workers < 1:
            raise ConfigError(f"workers: must be >= 1, got {cfg.workers!r}")
        costs = _get(raw, "costs", dict, "", {})
        _unknown(costs, _COSTS, "costs.")
        cfg.commission = _get(costs, "commission", dict, "costs.")
        cfg.slippage = _get(costs, "slippage", dict, "costs.")
        space = _get(raw, "space", dict, "", required=True)
        _unknown(space, _SPACE, "space.")
        params = _get(space, "parameters", dict, "space.", required=True)
        if not params:
            raise ConfigError("space.parameters: give at least one parameter")
        for name, spec in params.items():
            where = f"space.parameters.{name}."
            if not isinstance(spec, dict):
                raise ConfigError(f"space.parameters.{name}: expected a table like {{ type = \"int\", low = 1, high = 10 }}")
            _unknown(spec, _PARAM, where)
            kind = _get(spec, "type", str, where, required=True)
            if kind not in ("int", "float", "categorical"):
                raise ConfigError(f"{where}type: must be 'int', 'float' or 'categorical', got {kind!r}")
        cfg.parameters = dict(params)
        cfg.constraints = list(_get(space, "constraints", list, "space.", []))
        search = _get(raw, "search", dict, "", {"algorithm": "grid"})
        _unknown(search, _SEARCH, "search.")
        algorithm = _get(search, "algorithm", str, "search.", "grid")
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"search.algorithm: must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        if algorithm != "grid" and "n_trials" not in search and "timeout" not in search:
            raise ConfigError(f"search.n_trials: required for algorithm {algorithm!r} (or give search.timeout)")
        for key, kind in (("n_trials", int), ("seed", int), ("timeout", float), ("study_name", str),
                          ("storage", str), ("pruner", str)):
            _get(search, key, kind, "search.")
        cfg.search = dict(search, algorithm=algorithm)
        objective = _get(raw, "objective", dict, "", {"metric": "sharpe"})
        _unknown(objective, _OBJECTIVE, "objective.")
        if "metric" in objective and "metrics" in objective:
            raise ConfigError("objective: give either metric or metrics, not both")
        metrics = objective.get("metrics", [objective.get("metric", "sharpe")])
        if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics) or not metrics:
            raise ConfigError(f"objective.metrics: expected a list of metric names, got {metrics!r}")
        cfg.objective = list(metrics)
        d = objective.get("directions", objective.get("direction"))
        cfg.directions = None if d is None else ([d] if isinstance(d, str) else list(d))
        wf = _get(raw, "walk_forward", dict, "")
        if wf is not None:
            _unknown(wf, _WALK, "walk_forward.")
            if len(cfg.objective) > 1:
                raise ConfigError("walk_forward: needs a single objective metric")
        cfg.walk_forward = wf
        conf = _get(raw, "config", dict, "", {})
        _unknown(conf, _CONFIG, "config.")
        cfg.config = dict(conf)
        return cfg

    # -- building the objects -----------------------------------------------------------

    def build_space(self) -> Any:
        """The :class:`ParameterSpace` of ``[space]``."""
        from rustybt_ray.optimize import CategoricalParameter, ContinuousParameter, DiscreteParameter, ParameterSpace

        params = []
        for name, spec in self.parameters.items():
            where = f"space.parameters.{name}."
            kind = spec["type"]
            try:
                if kind == "categorical":
                    params.append(CategoricalParameter(name, tuple(_get(spec, "choices", list, where, required=True))))
                elif kind == "int":
                    params.append(DiscreteParameter(name, _get(spec, "low", int, where, required=True),
                                                    _get(spec, "high", int, where, required=True),
                                                    _get(spec, "step", int, where, 1)))
                elif "step" in spec:
                    params.append(DiscreteParameter(name, _get(spec, "low", float, where, required=True),
                                                    _get(spec, "high", float, where, required=True),
                                                    _get(spec, "step", float, where)))
                else:
                    params.append(ContinuousParameter(name, _get(spec, "low", float, where, required=True),
                                                      _get(spec, "high", float, where, required=True),
                                                      log=_get(spec, "log", bool, where, False)))
            except ConfigError:
                raise
            except RustyBTError as exc:
                raise ConfigError(f"space.parameters.{name}: {exc}") from None
        try:
            return ParameterSpace(params, constraints=self.constraints)
        except RustyBTError as exc:
            raise ConfigError(f"space: {exc}") from None

    def build_costs(self) -> tuple[Any, Any]:
        """The commission and slippage models of ``[costs]`` (None: the engine's defaults)."""
        from rustybt_ray.engine import costs as c

        commission = slippage = None
        if self.commission is not None:
            spec = dict(self.commission)
            model = spec.pop("model", None)
            makers = {"per_share": c.PerShare, "per_dollar": c.PerDollar, "bps": c.BasisPoints, "none": c.NoCommission}
            if model not in makers:
                raise ConfigError(f"costs.commission.model: must be one of {', '.join(makers)}, got {model!r}")
            try:
                commission = makers[model](**spec)
            except TypeError as exc:
                raise ConfigError(f"costs.commission: {exc}") from None
        if self.slippage is not None:
            spec = dict(self.slippage)
            model = spec.pop("model", None)
            makers = {"fixed_bps": c.FixedBasisPointsSlippage, "none": c.NoSlippage}
            if model not in makers:
                raise ConfigError(f"costs.slippage.model: must be one of {', '.join(makers)}, got {model!r}")
            try:
                slippage = makers[model](**spec)
            except TypeError as exc:
                raise ConfigError(f"costs.slippage: {exc}") from None
        return commission, slippage

    def build_optimization_config(self) -> Any:
        """The :class:`OptimizationConfig`: the environment's, with ``[config]`` on top."""
        from dataclasses import replace

        from rustybt_ray.config import OptimizationConfig

        base = OptimizationConfig.from_env()
        try:
            return replace(base, **self.config)
        except (TypeError, ValueError, RustyBTError) as exc:
            raise ConfigError(f"config: {exc}") from None

    def _search_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.search.items() if k not in ("algorithm", "checkpoint_every")}

    def build_algorithm(self, space: Any, resume: bool) -> Any:
        """The search algorithm of ``[search]`` (from :mod:`rustybt_ray.optimize.registry`).

        Optuna studies live in ``output/study.db`` unless ``storage`` says else. An
        option the algorithm cannot use is a :class:`ConfigError` naming it.
        """
        from rustybt_ray.optimize.registry import build_algorithm

        s = self._search_options()
        if self.search["algorithm"] in OPTUNA_ALGORITHMS and not s.get("storage"):
            s["storage"] = f"sqlite:///{(self.output / 'study.db').resolve()}"
        try:
            return build_algorithm(self.search["algorithm"], space, s)
        except ConfigError:
            raise
        except RustyBTError as exc:
            raise ConfigError(f"search: {exc}") from None

    def build_window_factory(self) -> Any:
        """Walk-forward: a ``space -> SearchAlgorithm`` factory, one fresh in-memory search per window.

        ``pruner``, ``constraints`` and ``enqueue`` apply to every window; ``storage``
        and ``study_name`` are a :class:`ConfigError` (windows must not share one study).
        """
        from rustybt_ray.optimize.registry import window_factory

        try:
            return window_factory(self.search["algorithm"], self._search_options())
        except RustyBTError as exc:
            raise ConfigError(f"search: {exc}") from None


def _flag(raw: Mapping[str, Any], key: str) -> bool:
    """A true/false key (False when absent); a string such as ``"yes"`` is refused, not guessed."""
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false (a TOML boolean, unquoted), got {value!r}")
    return value


def _date(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if hasattr(value, "isoformat"):  # TOML dates parse to datetime.date
        return value.isoformat()
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a date like 2020-01-31, got {value!r}")
    return value
