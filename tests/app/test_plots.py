"""Plots render real PNGs (size, colours, blank cells), buy-and-hold matches a share-by-share replay."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.errors import RustyBTError
from rustybt_ray.optimize.result import OptimizationResult
from rustybt_ray.errors import OutputError
from rustybt_ray.app.plots import (
    PlotDependencyError,
    PlotError,
    buy_and_hold_returns,
    equity_curve,
    grid_heatmap,
    walk_forward_curve,
)

needs_mpl = pytest.mark.skipif(find_spec("matplotlib") is None, reason="matplotlib not installed (the plots extra)")

FAST = [5, 10, 15]
SLOW = [20, 30, 40, 50]
MISSING = (10, 40)      # no trial at all
FAILED = (5, 50)        # its only trial failed
DATES = np.arange("2020-01-01", "2021-01-01", dtype="datetime64[D]")
RNG = np.random.default_rng(7)
RETURNS = RNG.normal(0.0005, 0.01, DATES.shape[0])
BENCH = RNG.normal(0.0003, 0.008, DATES.shape[0])


def rec(number: int, fast: int, slow: int, sharpe: float | None, status: str = "complete", **extra: object) -> dict:
    return {"number": number, "params": {"fast": fast, "slow": slow, **extra},
            "metrics": None if status == "failed" else {"sharpe": sharpe, "total_return": sharpe / 10},
            "status": status, "error": "boom" if status == "failed" else None,
            "duration_s": 0.1, "worker": 0, "attempts": 1}


def sharpe_of(fast: int, slow: int) -> float:
    return fast / 10 + slow / 100


def grid_result(direction: str = "maximize") -> OptimizationResult:
    records = []
    for fast in FAST:
        for slow in SLOW:
            if (fast, slow) == MISSING:
                continue
            status = "failed" if (fast, slow) == FAILED else "complete"
            records.append(rec(len(records), fast, slow, sharpe_of(fast, slow), status))
    return OptimizationResult.from_records(records, ["fast", "slow"], ["sharpe", "total_return"], "sharpe", direction)


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)


def distinct_colours(img: np.ndarray) -> int:
    rgb = (img[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    return len(np.unique(rgb, axis=0))


def assert_real_png(path: Path, width: int, height: int) -> np.ndarray:
    img = read_png(path)
    assert img.shape == (height, width, 4)
    assert not np.all(img == img[0, 0])
    assert distinct_colours(img) > 50  # lines, fills, anti-aliased text: far from a blank canvas
    return img


def cell_colour(fig, ax, x: float, y: float) -> tuple[int, ...]:
    """RGB of the rendered figure at data coordinates (x, y)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    return tuple(int(c) for c in img[int(round(img.shape[0] - py)), int(round(px)), :3])


# -- grid heatmap -----------------------------------------------------------------------


@needs_mpl
def test_grid_heatmap_writes_a_png_atomically(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "heat.png"
    assert grid_heatmap(grid_result(), "fast", "slow", path=out) == out
    assert_real_png(out, 800, 600)
    assert [p.name for p in out.parent.iterdir()] == ["heat.png"]  # no temporary file left behind


@needs_mpl
def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    out = tmp_path / "eq.png"
    out.write_bytes(b"old")

    def disk_full(self: Figure, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    # A full disk is the user's to fix: a typed error that names the file, not a bare OSError.
    with pytest.raises(OutputError, match=r"cannot write .*eq\.png: disk full"):
        equity_curve(RETURNS, DATES, path=out)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["eq.png"]


@needs_mpl
def test_grid_heatmap_cells_colours_blanks_and_best() -> None:
    fig = grid_heatmap(grid_result(), "fast", "slow")
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    assert grid.shape == (len(SLOW), len(FAST))  # rows: y values, columns: x values
    colours = {}
    for i, slow in enumerate(SLOW):
        for j, fast in enumerate(FAST):
            # Off-centre, away from the best cell's label box.
            colour = cell_colour(fig, ax, j + 0.3, i + 0.3)
            if (fast, slow) in (MISSING, FAILED):
                assert grid.mask[i, j]
                assert colour == (255, 255, 255)  # blank: the figure background shows
            else:
                assert grid[i, j] == pytest.approx(sharpe_of(fast, slow))
                colours[(fast, slow)] = colour
    assert len(set(colours.values())) == len(colours)  # every value differs, so every colour does
    best = max(colours, key=lambda k: sharpe_of(*k))
    assert colours[best] == max(colours.values(), key=sum)  # viridis: the best is the brightest
    assert [t.get_text() for t in ax.texts] == [f"best {sharpe_of(*best):.4g}"]
    (outline,) = ax.patches
    assert outline.get_xy() == (FAST.index(best[0]) - 0.5, SLOW.index(best[1]) - 0.5)
    colorbar_ax = fig.axes[1]
    assert colorbar_ax.get_ylabel() == "sharpe"


@needs_mpl
def test_grid_heatmap_minimize_marks_the_lowest_and_projects_other_parameters() -> None:
    records = [
        rec(0, 5, 20, 1.0, mode="a"), rec(1, 5, 20, 3.0, mode="b"),     # same cell, other parameter differs
        rec(2, 10, 20, 2.0, mode="a"), rec(3, 10, 20, float("nan"), mode="b"),
        rec(4, 5, 30, 0.5, mode="a"),
    ]
    result = OptimizationResult.from_records(records, ["fast", "slow", "mode"], ["sharpe", "total_return"],
                                             "sharpe", "minimize")
    fig = grid_heatmap(result, "fast", "slow")
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    assert grid[0, 0] == 1.0 and grid[0, 1] == 2.0 and grid[1, 0] == 0.5  # min over 'mode', NaN ignored
    assert grid.mask[1, 1]
    assert [t.get_text() for t in ax.texts] == ["best 0.5"]
    assert fig.axes[1].get_ylabel() == "sharpe (lowest over other parameters)"
    # A parameter value whose trials all failed keeps its (blank) row.
    failed_row = OptimizationResult.from_records(records + [rec(5, 5, 40, None, "failed", mode="a")],
                                                 ["fast", "slow", "mode"], ["sharpe", "total_return"],
                                                 "sharpe", "minimize")
    grid = grid_heatmap(failed_row, "fast", "slow").axes[0].images[0].get_array()
    assert grid.shape == (3, 2) and grid.mask[2].all()
    # Another metric is coloured too; its best follows 'maximize' (it is not an objective).
    fig = grid_heatmap(result, "slow", "fast", value="total_return")
    assert [t.get_text() for t in fig.axes[0].texts] == ["best 0.3"]


@needs_mpl
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"x": "fastt", "y": "slow"}, "x='fastt' is not a parameter"),
    ({"x": "fast", "y": "sharpe"}, "y='sharpe' is not a parameter"),
    ({"x": "fast", "y": "fast"}, "must be different"),
    ({"x": "fast", "y": "slow", "value": "sortino"}, "value='sortino' is not a metric"),
    ({"x": "fast", "y": "slow", "value": "status"}, "not numeric"),
])
def test_grid_heatmap_rejects_bad_names(kwargs: dict, message: str) -> None:
    with pytest.raises(PlotError, match=message):
        grid_heatmap(grid_result(), **kwargs)


@needs_mpl
def test_grid_heatmap_without_complete_trials() -> None:
    result = OptimizationResult.from_records([rec(0, 5, 20, None, "failed")], ["fast", "slow"],
                                             ["sharpe", "total_return"], "sharpe", "maximize")
    with pytest.raises(PlotError, match="no complete trial"):
        grid_heatmap(result, "fast", "slow")


# -- equity and walk-forward ------------------------------------------------------------

@needs_mpl
def test_equity_curve_png_and_series(tmp_path: Path) -> None:
    out = equity_curve(RETURNS, DATES, BENCH, path=tmp_path / "eq.png")
    img = assert_real_png(out, 1000, 600)
    assert distinct_colours(img) > 200

    fig = equity_curve(RETURNS, DATES, BENCH, title="t")
    top, bottom = fig.axes
    equity = np.cumprod(1 + RETURNS)
    np.testing.assert_allclose(top.lines[0].get_ydata(), equity)
    np.testing.assert_allclose(top.lines[1].get_ydata(), np.cumprod(1 + BENCH))
    drawdown = bottom.lines[0].get_ydata()
    np.testing.assert_allclose(drawdown, equity / np.maximum.accumulate(equity) - 1)
    assert drawdown.max() == 0.0 and drawdown.min() < -0.02
    assert top.get_title() == "t" and len(top.get_legend().get_texts()) == 2


@needs_mpl
def test_equity_curve_without_benchmark_and_with_nan() -> None:
    r = RETURNS.copy()
    r[10] = np.nan  # a bar without a position: flat
    fig = equity_curve(r, DATES)
    line = fig.axes[0].lines[0].get_ydata()
    assert line[10] == line[9] and len(fig.axes[0].lines) == 2  # the curve and the 1.0 reference


@needs_mpl
def test_equity_curve_rejects_mismatched_lengths() -> None:
    with pytest.raises(PlotError, match="returns has 10 values but dates has 366"):
        equity_curve(RETURNS[:10], DATES)
    with pytest.raises(PlotError, match="benchmark_returns has 5 values"):
        equity_curve(RETURNS, DATES, BENCH[:5])
    with pytest.raises(PlotError, match="one-dimensional"):
        equity_curve(np.zeros((2, 2)), DATES[:2])


@needs_mpl
def test_walk_forward_curve_png_and_windows(tmp_path: Path) -> None:
    bounds = [(DATES[0], DATES[120]), ("2020-05-01", "2020-08-28"), (DATES[241], DATES[-1])]
    out = walk_forward_curve(RETURNS, DATES, bounds, path=tmp_path / "wf.png")
    assert_real_png(out, 1000, 500)
    fig = walk_forward_curve(RETURNS, DATES, bounds)
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # one shaded span per window
    assert [t.get_text() for t in ax.texts] == ["W1", "W2", "W3"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.cumprod(1 + RETURNS))
    with pytest.raises(PlotError, match="window 1 ends"):
        walk_forward_curve(RETURNS, DATES, [("2020-06-01", "2020-05-01")])


# -- buy and hold -----------------------------------------------------------------------


def make_bundle(prices: np.ndarray) -> Bundle:
    t, n = prices.shape
    calendar = np.datetime64("2021-01-04") + np.arange(t).astype("timedelta64[D]")
    volume = np.where(np.isnan(prices), np.nan, 1000.0)
    values = np.stack([prices, prices, prices, prices, volume])
    return Bundle("bh", "1d", calendar, [f"S{i}" for i in range(n)], values)


def replay(prices: np.ndarray) -> np.ndarray:
    """Share-by-share buy-and-hold: 1/N of capital per asset, bought at its first price."""
    t, n = prices.shape
    marks = prices.copy()
    for j in range(n):  # forward-fill, as Bundle.price does
        for i in range(1, t):
            if np.isnan(marks[i, j]):
                marks[i, j] = marks[i - 1, j]
    shares, cash = np.zeros(n), np.full(n, 1.0 / n)
    value = np.empty(t)
    for i in range(t):
        for j in range(n):
            if cash[j] > 0 and not np.isnan(marks[i, j]):
                shares[j], cash[j] = cash[j] / marks[i, j], 0.0
        value[i] = cash.sum() + sum(shares[j] * marks[i, j] for j in range(n) if shares[j])
    return np.concatenate([[0.0], value[1:] / value[:-1] - 1])


PRICES = np.array([
    [10.0, 50.0, np.nan],
    [11.0, 49.0, np.nan],
    [12.0, np.nan, 20.0],   # S1 has no bar: held at its last price
    [11.5, 52.0, 22.0],
    [13.0, 55.0, 21.0],
    [12.0, 54.0, 25.0],
])


def test_buy_and_hold_matches_a_replay() -> None:
    bundle = make_bundle(PRICES)
    got = buy_and_hold_returns(bundle)
    np.testing.assert_allclose(got, replay(PRICES), rtol=0, atol=1e-15)
    assert got.shape == (6,) and got[0] == 0.0
    # All assets priced from the start: value is the mean of price relatives.
    full = PRICES[3:]
    rel = (full / full[0]).mean(axis=1)
    np.testing.assert_allclose(buy_and_hold_returns(make_bundle(full)), np.r_[0.0, rel[1:] / rel[:-1] - 1])


def test_buy_and_hold_range_and_single_asset() -> None:
    bundle = make_bundle(PRICES)
    sub = buy_and_hold_returns(bundle, "2021-01-06", "2021-01-08")  # bars 2..4
    # S1 has no bar on the range's first day: it is bought at its last price before it.
    np.testing.assert_allclose(sub, replay(_ffilled(PRICES)[2:5]), rtol=0, atol=1e-15)
    one = buy_and_hold_returns(make_bundle(PRICES[:, :1]))
    np.testing.assert_allclose(one, np.r_[0.0, np.diff(PRICES[:, 0]) / PRICES[:-1, 0]])
    with pytest.raises(PlotError, match="no bar between"):
        buy_and_hold_returns(bundle, "2030-01-01", "2030-12-31")


def _ffilled(prices: np.ndarray) -> np.ndarray:
    out = prices.copy()
    for i in range(1, len(out)):
        out[i] = np.where(np.isnan(out[i]), out[i - 1], out[i])
    return out


# -- without matplotlib -----------------------------------------------------------------


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` raise ImportError
    with pytest.raises(PlotDependencyError, match=r"pip install 'rustybt-ray\[plots\]'") as info:
        equity_curve(RETURNS, DATES)
    assert isinstance(info.value, RustyBTError) and isinstance(info.value, ImportError)


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = "import sys, rustybt_ray.app.plots; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
