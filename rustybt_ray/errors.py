"""The typed errors of rustybt_ray.

Every error a user can cause derives from :class:`RustyBTError`, so callers can
catch one base class and the CLI can print one clear line instead of a traceback.
"""

from __future__ import annotations


class RustyBTError(Exception):
    """Base class of every error rustybt_ray raises on bad input or bad state."""


class BundleError(RustyBTError):
    """A bundle cannot be found, read, written or named as asked."""


class BundleNotFoundError(BundleError):
    """No bundle is registered under the given name or path."""


class BundleValidationError(BundleError):
    """Input data for a bundle is malformed.

    The message names the file, symbol, row and problem where they are known;
    the same facts are kept as attributes for programs.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        symbol: str | None = None,
        row: int | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.symbol = symbol
        self.row = row
        where = []
        if file is not None:
            where.append(f"file {file}")
        if symbol is not None:
            where.append(f"symbol {symbol}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


class SymbolNotFoundError(RustyBTError, KeyError):
    """A symbol is not in the bundle's asset table."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StrategyError(RustyBTError):
    """A strategy class or its parameters are unusable (unknown parameter, bad signature)."""


class OrderError(RustyBTError):
    """An order cannot be placed (no price for the asset, bad amount, unknown order)."""


class HistoryError(RustyBTError):
    """A ``data.history``/``data.current`` request is malformed (field, frequency, bar count)."""


class ConfigError(RustyBTError):
    """A configuration value or environment variable is malformed."""


class BundleNameError(BundleError, ValueError):
    """A bundle name is not allowed (empty, a path, or characters outside ``[A-Za-z0-9_.-]``)."""


class SearchSpaceError(RustyBTError):
    """A parameter space, a constraint, a search algorithm's use, or a result's column names are malformed."""


class OverfittingError(RustyBTError):
    """Inputs to an overfitting diagnostic (deflated Sharpe ratio, PBO) are malformed.

    Too few trials, bars or splits, a negative Sharpe variance, non-finite
    returns (the message names the trial columns) or constant returns.
    """


class OutputError(RustyBTError):
    """A result file or directory cannot be written (no space left, a parent that is a regular file, no permission).

    The message names the file or directory.
    """


class ClusterError(RustyBTError, RuntimeError):
    """The Ray cluster cannot do what a sweep needs (no worker could start, none left alive).

    Also a ``RuntimeError``, which ``cluster/`` raised before it had typed errors.
    """


class WorkerPoolClosedError(ClusterError):
    """A :class:`~rustybt_ray.cluster.WorkerPool` was used after ``close()``, or after Ray was shut down or restarted."""


class WorkerCountError(ConfigError, ValueError):
    """A worker count (``n_workers``, ``n_jobs``, ``--workers``) or a pool size is not a positive int.

    Also a ``ValueError``, which ``cluster/`` raised for it before it had typed errors.
    """


class WeightsError(StrategyError):
    """A vectorized strategy's target weights are unusable (wrong shape, not numbers, infinite)."""
