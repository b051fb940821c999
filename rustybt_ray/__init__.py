"""rustybt_ray: trading-strategy backtests and optimization sweeps on Ray.

The single-process core::

    from rustybt_ray import TradingAlgorithm, run_algorithm, load_bundle
"""

from rustybt_ray.data import (
    Asset,
    Bundle,
    ingest_bundle,
    list_bundles,
    load_bundle,
    remove_bundle,
)
from rustybt_ray.engine import (
    BacktestResult,
    LimitOrder,
    MarketOrder,
    StopLimitOrder,
    StopOrder,
    TradingAlgorithm,
    date_rules,
    run_algorithm,
    time_rules,
)
from rustybt_ray.errors import RustyBTError

__version__ = "0.1.0"

__all__ = [
    "Asset",
    "BacktestResult",
    "Bundle",
    "LimitOrder",
    "MarketOrder",
    "RustyBTError",
    "StopLimitOrder",
    "StopOrder",
    "TradingAlgorithm",
    "date_rules",
    "ingest_bundle",
    "list_bundles",
    "load_bundle",
    "remove_bundle",
    "run_algorithm",
    "time_rules",
    "__version__",
]
