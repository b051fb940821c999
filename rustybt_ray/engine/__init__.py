"""The event-driven backtest engine (knows nothing of Ray)."""

from rustybt_ray.engine.algorithm import Portfolio, Position, TradingAlgorithm
from rustybt_ray.engine.array_cache import ArrayCache, rolling_mean
from rustybt_ray.engine.bar_data import BarData
from rustybt_ray.engine.costs import (
    BasisPoints,
    CommissionModel,
    FixedBasisPointsSlippage,
    NoCommission,
    NoSlippage,
    PerDollar,
    PerShare,
    SlippageModel,
    VolumeShareSlippage,
)
from rustybt_ray.engine.ledger import Ledger, Transactions
from rustybt_ray.engine.orders import (
    ExecutionStyle,
    LimitOrder,
    MarketOrder,
    Order,
    StopLimitOrder,
    StopOrder,
)
from rustybt_ray.engine.result import BacktestResult
from rustybt_ray.engine.run import (
    TrialPruned,
    checkpoint_bars,
    run_algorithm,
    run_metrics,
)
from rustybt_ray.engine.schedule import date_rules, time_rules

__all__ = [
    "ArrayCache",
    "BacktestResult",
    "BarData",
    "BasisPoints",
    "CommissionModel",
    "ExecutionStyle",
    "FixedBasisPointsSlippage",
    "Ledger",
    "LimitOrder",
    "MarketOrder",
    "NoCommission",
    "NoSlippage",
    "Order",
    "PerDollar",
    "PerShare",
    "Portfolio",
    "Position",
    "SlippageModel",
    "StopLimitOrder",
    "StopOrder",
    "TradingAlgorithm",
    "Transactions",
    "date_rules",
    "rolling_mean",
    "run_algorithm",
    "run_metrics",
    "TrialPruned",
    "VolumeShareSlippage",
    "checkpoint_bars",
    "time_rules",
]
