"""OptimizationConfig: defaults, validation, environment variables, overrides."""

from __future__ import annotations

import dataclasses

import pytest

from rustybt_ray.config import OptimizationConfig
from rustybt_ray.errors import ConfigError, RustyBTError

# One non-default value per field, as an env string and as the parsed value.
ENV_VALUES = {
    "enable_caching": ("false", False),
    "cache_size_gb": ("4.5", 4.5),
    "lru_maxsize": ("256", 256),
    "enable_bundle_pooling": ("no", False),
    "max_bundle_pool_size": ("7", 7),
    "n_workers": ("12", 12),
    "min_batch_seconds": ("0.25", 0.25),
    "max_batch_size": ("64", 64),
    "batches_in_flight": ("3", 3),
    "max_retries": ("0", 0),
    "health_check_interval_s": ("2.5", 2.5),
    "worker_start_timeout_s": ("30", 30.0),
    "kernel_memory_mb": ("64", 64.0),
    "return_daily_returns": ("off", False),
    "spill_trials": ("none", None),
    "results_dir": ("/srv/sweeps", "/srv/sweeps"),
    "store_commit_s": ("0.5", 0.5),
}


def test_defaults() -> None:
    cfg = OptimizationConfig()
    assert cfg.enable_caching is True
    assert cfg.cache_size_gb == 2.0
    assert cfg.lru_maxsize == 128
    assert cfg.enable_bundle_pooling is True
    assert cfg.max_bundle_pool_size == 100
    assert cfg.n_workers is None
    assert cfg.min_batch_seconds == 0.2
    assert cfg.max_batch_size == 256
    assert cfg.batches_in_flight == 2
    assert cfg.max_retries == 3
    assert cfg.health_check_interval_s == 10.0
    assert cfg.worker_start_timeout_s == 300.0
    assert cfg.return_daily_returns is True
    assert cfg.spill_trials == 20_000
    assert cfg.results_dir is None
    assert cfg.cache_size_bytes == 2 * 2**30


def test_every_field_has_a_test_value() -> None:
    assert set(ENV_VALUES) == {f.name for f in dataclasses.fields(OptimizationConfig)}


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        OptimizationConfig().cache_size_gb = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(ENV_VALUES))
def test_each_field_from_env(name: str) -> None:
    text, value = ENV_VALUES[name]
    cfg = OptimizationConfig.from_env({f"RUSTYBT_{name.upper()}": text})
    assert getattr(cfg, name) == value
    # other fields keep their defaults
    default = OptimizationConfig()
    for f in dataclasses.fields(cfg):
        if f.name != name:
            assert getattr(cfg, f.name) == getattr(default, f.name)


def test_all_fields_from_env_at_once() -> None:
    env = {f"RUSTYBT_{k.upper()}": t for k, (t, _) in ENV_VALUES.items()}
    cfg = OptimizationConfig.from_env(env)
    assert {k: getattr(cfg, k) for k in ENV_VALUES} == {k: v for k, (_, v) in ENV_VALUES.items()}


def test_guide_variables_and_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTYBT_CACHE_SIZE_GB", "4.0")
    monkeypatch.setenv("RUSTYBT_ENABLE_CACHING", "false")
    monkeypatch.setenv("RUSTYBT_LRU_MAXSIZE", "256")
    cfg = OptimizationConfig.from_env()
    assert (cfg.cache_size_gb, cfg.enable_caching, cfg.lru_maxsize) == (4.0, False, 256)


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "Yes", "on", " on "])
def test_bool_true_spellings(text: str) -> None:
    assert OptimizationConfig.from_env({"RUSTYBT_RETURN_DAILY_RETURNS": text}).return_daily_returns is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "NO", "off"])
def test_bool_false_spellings(text: str) -> None:
    assert OptimizationConfig.from_env({"RUSTYBT_ENABLE_CACHING": text}).enable_caching is False


@pytest.mark.parametrize("text", ["none", "None", "auto", ""])
def test_n_workers_none_spellings(text: str) -> None:
    assert OptimizationConfig.from_env({"RUSTYBT_N_WORKERS": text}).n_workers is None


@pytest.mark.parametrize(
    ("var", "text", "expected"),
    [
        ("RUSTYBT_ENABLE_CACHING", "maybe", "true/false"),
        ("RUSTYBT_ENABLE_BUNDLE_POOLING", "2", "true/false"),
        ("RUSTYBT_CACHE_SIZE_GB", "big", "finite number"),
        ("RUSTYBT_CACHE_SIZE_GB", "inf", "finite number"),
        ("RUSTYBT_CACHE_SIZE_GB", "nan", "finite number"),
        ("RUSTYBT_LRU_MAXSIZE", "1.5", "integer"),
        ("RUSTYBT_LRU_MAXSIZE", "many", "integer"),
        ("RUSTYBT_N_WORKERS", "eight", "integer"),
        ("RUSTYBT_MAX_RETRIES", "", "integer"),
    ],
)
def test_malformed_env_names_variable_value_and_expectation(var: str, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        OptimizationConfig.from_env({var: text})
    msg = str(info.value)
    assert var in msg and repr(text) in msg and expected in msg


def test_env_value_out_of_range_names_field() -> None:
    with pytest.raises(ConfigError, match="cache_size_gb"):
        OptimizationConfig.from_env({"RUSTYBT_CACHE_SIZE_GB": "-1"})


def test_overrides_win_over_env() -> None:
    env = {"RUSTYBT_CACHE_SIZE_GB": "4.0", "RUSTYBT_ENABLE_CACHING": "false", "RUSTYBT_N_WORKERS": "3"}
    cfg = OptimizationConfig.from_env(env, cache_size_gb=1.0, n_workers=None)
    assert cfg.cache_size_gb == 1.0
    assert cfg.n_workers is None
    assert cfg.enable_caching is False


def test_unrelated_env_ignored() -> None:
    assert OptimizationConfig.from_env({"RUSTYBT_BUNDLE_ROOT": "/x", "PATH": "/bin"}) == OptimizationConfig()


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match="cache_size_mb"):
        OptimizationConfig.from_env({}, cache_size_mb=5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cache_size_gb", 0.0),
        ("cache_size_gb", -2.0),
        ("cache_size_gb", float("nan")),
        ("cache_size_gb", "2"),
        ("lru_maxsize", 0),
        ("lru_maxsize", 1.5),
        ("lru_maxsize", True),
        ("max_bundle_pool_size", 0),
        ("n_workers", 0),
        ("n_workers", -1),
        ("min_batch_seconds", 0.0),
        ("max_batch_size", 0),
        ("batches_in_flight", 0),
        ("max_retries", -1),
        ("health_check_interval_s", 0),
        ("enable_caching", 1),
        ("return_daily_returns", "yes"),
    ],
)
def test_validation_names_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        OptimizationConfig(**{field: value})
    assert isinstance(info.value, RustyBTError)


def test_int_accepted_for_float_fields() -> None:
    cfg = OptimizationConfig(cache_size_gb=1, health_check_interval_s=5)
    assert cfg.cache_size_bytes == 2**30
