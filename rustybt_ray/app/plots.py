"""PNG plots of sweeps: objective heatmaps, equity against buy-and-hold, walk-forward equity.

matplotlib is optional (``pip install 'rustybt-ray[plots]'``) and imported inside the
functions, so the rest of the package never pays for it. Each plot function returns
the matplotlib ``Figure`` (shown in Jupyter with ``%matplotlib inline`` or
``display(fig)``), or, given ``path``, writes a PNG there and returns the path.

Figures are built without ``pyplot``: no global figure registry to leak memory in
long sweeps, and no GUI backend is ever touched. Files are rendered with the Agg
canvas whatever the session's backend, and written to a temporary file first, then
moved into place, so a reader never sees half a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rustybt_ray.errors import RustyBTError
from rustybt_ray.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from rustybt_ray.data.bundle import Bundle
    from rustybt_ray.optimize.result import OptimizationResult

__all__ = [
    "PlotError",
    "PlotDependencyError",
    "grid_heatmap",
    "equity_curve",
    "walk_forward_curve",
    "buy_and_hold_returns",
]

PathLike = str | os.PathLike[str]
_INSTALL_HINT = "pip install 'rustybt-ray[plots]'"
_MAX_TICKS = 15


class PlotError(RustyBTError, ValueError):
    """Inputs of a plot are malformed: unknown column, mismatched lengths, nothing to plot."""


class PlotDependencyError(RustyBTError, ImportError):
    """matplotlib is not installed; the message says how to install it."""


def _figure(figsize: tuple[float, float], nrows: int = 1, height_ratios: Sequence[float] | None = None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotDependencyError(f"plotting needs matplotlib: {_INSTALL_HINT}") from exc
    fig = Figure(figsize=figsize, layout="constrained")
    if nrows > 1:
        fig.subplots(nrows, 1, sharex=True, gridspec_kw={"height_ratios": list(height_ratios or [1] * nrows)})
    else:
        fig.subplots()
    return fig


def _finish(fig: Figure, path: PathLike | None, dpi: float) -> Path | Figure:
    """The figure itself, or the path it was saved to as PNG (atomically)."""
    if path is None:
        return fig
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # binds an Agg canvas: renders without any GUI backend
    out = Path(path).expanduser()
    with atomic_write(out, fsync=False) as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return out


def _as_1d(name: str, values: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise PlotError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise PlotError(f"{name} has {arr.shape[0]} values but dates has {n}")
    return arr


def _dates(dates: Any) -> np.ndarray:
    d = np.asarray(dates)
    if d.ndim != 1 or d.shape[0] == 0:
        raise PlotError(f"dates must be a non-empty one-dimensional array, got shape {d.shape}")
    return d


def _equity(returns: np.ndarray) -> np.ndarray:
    """Growth of 1 from per-bar simple returns; NaN counts as a flat bar (no position)."""
    return np.cumprod(1.0 + np.nan_to_num(returns, nan=0.0))


def _drawdown(equity: np.ndarray) -> np.ndarray:
    return equity / np.maximum.accumulate(equity) - 1.0


def _thin_ticks(axis: Any, labels: list[str]) -> None:
    """At most ``_MAX_TICKS`` labels, evenly spaced, so a 40-value axis stays readable."""
    step = max(1, -(-len(labels) // _MAX_TICKS))
    idx = list(range(0, len(labels), step))
    axis.set_ticks(idx, labels=[labels[i] for i in idx])


def _bound(value: Any, dates: np.ndarray) -> Any:
    """A window bound in the unit of ``dates``, so it compares and plots like them."""
    return np.datetime64(value).astype(dates.dtype) if dates.dtype.kind == "M" else value


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- grid heatmap -----------------------------------------------------------------------


def grid_heatmap(
    result: OptimizationResult,
    x: str,
    y: str,
    value: str | None = None,
    path: PathLike | None = None,
    *,
    cmap: str | None = None,
    figsize: tuple[float, float] = (8.0, 6.0),
    dpi: float = 100.0,
) -> Path | Figure:
    """A heatmap of a metric over two parameters of a grid sweep.

    Args:
        result: the sweep; only its complete trials are drawn.
        x, y: parameter names for the columns and rows (sorted by value).
        value: the metric to colour by; default ``result.objective``.
        path: where to write the PNG; None returns the figure.
        cmap: a matplotlib colormap name; default viridis, reversed for a minimized
            metric so the best cell is always the brightest.
        figsize, dpi: figure size in inches and resolution (800 x 600 px by default).

    Cells without a complete trial with a finite value stay blank. When the grid
    varies other parameters too, a cell shows the best value over them (max, or min
    for a minimized metric), and the colorbar says so. The best cell is outlined and
    labelled with its value.
    """
    import polars as pl

    value = value or result.objective
    for role, name in (("x", x), ("y", y)):
        if name not in result.param_names:
            raise PlotError(f"{role}={name!r} is not a parameter of this result; parameters: {result.param_names}")
    if x == y:
        raise PlotError(f"x and y must be different parameters, both are {x!r}")
    if value not in result.trials.columns or value in (x, y):
        raise PlotError(f"value={value!r} is not a metric of this result; metrics: {result.metric_names}")
    directions = dict(result.objectives)
    maximize = directions.get(value, "maximize") == "maximize"

    if not result.trials.schema[value].is_numeric():
        raise PlotError(f"value={value!r} is not numeric")
    # The axes come from every trial, so a row whose trials all failed shows as blank
    # cells instead of vanishing from the grid.
    placed = result.trials.filter(pl.col(x).is_not_null() & pl.col(y).is_not_null())
    done = placed.filter(pl.col("status") == "complete")
    if done.height == 0:
        raise PlotError(f"no complete trial has both {x!r} and {y!r}")
    xs = placed[x].unique().sort().to_list()
    ys = placed[y].unique().sort().to_list()
    finite = done.filter(pl.col(value).cast(pl.Float64).is_finite())
    agg = pl.col(value).max() if maximize else pl.col(value).min()
    cells = finite.group_by([x, y]).agg(agg.alias("__v"), pl.len().alias("__n"))
    grid = np.full((len(ys), len(xs)), np.nan)
    xi = {v: i for i, v in enumerate(xs)}
    yi = {v: i for i, v in enumerate(ys)}
    for vx, vy, v, _ in cells.iter_rows():
        grid[yi[vy], xi[vx]] = v
    projected = cells.height > 0 and int(cells["__n"].max()) > 1

    fig = _figure(figsize)
    ax: Axes = fig.axes[0]
    import matplotlib

    # Masked cells transparent: the blank background shows through.
    colormap = matplotlib.colormaps[cmap or ("viridis" if maximize else "viridis_r")].with_extremes(bad=(0, 0, 0, 0))
    image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=colormap,
                      interpolation="nearest")
    _thin_ticks(ax.xaxis, [_label(v) for v in xs])
    _thin_ticks(ax.yaxis, [_label(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    label = value + (f" ({'best' if maximize else 'lowest'} over other parameters)" if projected else "")
    fig.colorbar(image, ax=ax).set_label(label)
    ax.set_title(f"{value} over {x} \u00d7 {y}")

    if np.isfinite(grid).any():
        flat = np.nanargmax(grid) if maximize else np.nanargmin(grid)
        row, col = np.unravel_index(flat, grid.shape)
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
        ax.annotate(
            f"best {grid[row, col]:.4g}",
            xy=(col, row),
            ha="center",
            va="center",
            fontsize=8,
            color="white",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.6},
        )
    return _finish(fig, path, dpi)


# -- equity -----------------------------------------------------------------------------


def buy_and_hold_returns(bundle: Bundle, start: Any = None, end: Any = None) -> np.ndarray:
    """Per-bar returns of an equal-weight buy-and-hold of every asset of ``bundle``.

    Capital is split equally across the N assets at the first bar of ``[start, end]``
    and never rebalanced. Each share is invested at the asset's price (close,
    forward-filled: ``Bundle.price``) on that bar; an asset without a price yet holds
    its share in cash until its first price, and is bought then. The first return is 0.

    Returns:
        float64 array, one return per bar of the range (``bundle.index_range``).
    """
    i0, i1 = bundle.index_range(start, end)
    if i1 <= i0:
        raise PlotError(f"bundle {bundle.name!r} has no bar between {start!r} and {end!r}")
    n_assets = bundle.shape[1]
    if n_assets == 0:
        raise PlotError(f"bundle {bundle.name!r} has no assets")
    price = bundle.price[i0:i1]
    priced = ~np.isnan(price)
    # Entry price per asset: its first price in the range (NaN if it never trades).
    first = np.where(priced.any(axis=0), priced.argmax(axis=0), 0)
    entry = price[first, np.arange(n_assets)]
    growth = np.where(priced, price / np.where(np.isnan(entry), 1.0, entry), 1.0)
    value = growth.mean(axis=1)  # each asset's 1/N share, in cash (1.0) until bought
    returns = np.empty_like(value)
    returns[0] = 0.0
    returns[1:] = value[1:] / value[:-1] - 1.0
    return returns


def equity_curve(
    returns: Any,
    dates: Any,
    benchmark_returns: Any | None = None,
    title: str = "Equity of the best trial",
    path: PathLike | None = None,
    *,
    label: str = "strategy",
    benchmark_label: str = "buy and hold",
    figsize: tuple[float, float] = (10.0, 6.0),
    dpi: float = 100.0,
) -> Path | Figure:
    """Equity (growth of 1) of per-bar ``returns``, optionally against a benchmark, with drawdowns below.

    Args:
        returns: per-bar simple returns, e.g. ``result.returns[result.best["number"]]``;
            NaN counts as a flat bar.
        dates: one timestamp per return (``datetime64`` or anything matplotlib dates).
        benchmark_returns: per-bar returns on the same dates, e.g. from
            :func:`buy_and_hold_returns`.
        title: the figure title.
        path: where to write the PNG; None returns the figure.
        label, benchmark_label: legend entries.
        figsize, dpi: figure size in inches and resolution (1000 x 600 px by default).
    """
    d = _dates(dates)
    r = _as_1d("returns", returns, d.shape[0])
    series = [(label, _equity(r), "tab:blue")]
    if benchmark_returns is not None:
        b = _as_1d("benchmark_returns", benchmark_returns, d.shape[0])
        series.append((benchmark_label, _equity(b), "tab:gray"))

    fig = _figure(figsize, nrows=2, height_ratios=(3, 1))
    top, bottom = fig.axes
    for name, eq, colour in series:
        top.plot(d, eq, color=colour, linewidth=1.4, label=f"{name} ({eq[-1] - 1:+.1%})")
        dd = _drawdown(eq)
        bottom.plot(d, dd, color=colour, linewidth=0.9)
        if name == label:
            bottom.fill_between(d, dd, 0.0, color="tab:red", alpha=0.3, linewidth=0)
    top.axhline(1.0, color="black", linewidth=0.6, alpha=0.5)
    top.set_ylabel("equity (growth of 1)")
    top.set_title(title)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown")
    bottom.yaxis.set_major_formatter(_percent())
    bottom.grid(alpha=0.3)
    return _finish(fig, path, dpi)


def walk_forward_curve(
    oos_returns: Any,
    dates: Any,
    window_bounds: Sequence[tuple[Any, Any]] | None = None,
    path: PathLike | None = None,
    *,
    title: str = "Walk-forward: stitched out-of-sample equity",
    figsize: tuple[float, float] = (10.0, 5.0),
    dpi: float = 100.0,
) -> Path | Figure:
    """Equity of the out-of-sample returns of all walk-forward windows, one after another.

    Args:
        oos_returns: per-bar simple returns of the test windows, concatenated in time
            order; NaN counts as a flat bar.
        dates: one timestamp per return.
        window_bounds: ``(start, end)`` of each test window, shaded alternately and
            numbered so the windows' contributions can be told apart.
        path: where to write the PNG; None returns the figure.
        title: the figure title.
        figsize, dpi: figure size in inches and resolution (1000 x 500 px by default).
    """
    d = _dates(dates)
    r = _as_1d("oos_returns", oos_returns, d.shape[0])
    eq = _equity(r)
    fig = _figure(figsize)
    ax = fig.axes[0]
    for k, (lo, hi) in enumerate(window_bounds or ()):
        lo_, hi_ = _bound(lo, d), _bound(hi, d)
        if hi_ < lo_:
            raise PlotError(f"window {k + 1} ends ({hi!r}) before it starts ({lo!r})")
        ax.axvspan(lo_, hi_, color="tab:orange" if k % 2 == 0 else "tab:green", alpha=0.12, linewidth=0)
        # At the bottom edge, where the legend (upper left) cannot cover them.
        ax.annotate(f"W{k + 1}", xy=(lo_, 0.0), xycoords=("data", "axes fraction"), xytext=(3, 3),
                    textcoords="offset points", va="bottom", fontsize=8, alpha=0.8)
    ax.plot(d, eq, color="tab:blue", linewidth=1.4, label=f"out of sample ({eq[-1] - 1:+.1%})")
    ax.axhline(1.0, color="black", linewidth=0.6, alpha=0.5)
    ax.set_ylabel("equity (growth of 1)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _finish(fig, path, dpi)


def _percent() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)
