"""rustybt_ray: trading-strategy backtests and optimization sweeps on Ray."""

__version__ = "0.1.0"
