"""Walk-forward windows: :class:`WindowConfig` and the pure :func:`make_windows`.

A walk-forward analysis cuts the date range into windows; each window has a
TRAIN segment (the search runs there), an optional VALIDATION segment (the best
train candidates are re-run there and the one best there is selected) and a TEST
segment (the selection runs there once, out of sample)::

    rolling:   |--train--|-val-|-test-|
                    |--train--|-val-|-test-|          (every segment moves by the step)
    anchored:  |--train--|-val-|-test-|
               |-----train----|-val-|-test-|          (train always starts at the first bar)

Segments are half-open ranges of bar indices into the bundle calendar. Lengths are
in trading sessions (``unit='sessions'``, the default: the user guide's
``train_period_days=252  # 1 year training`` means 252 trading days, whatever the bar
frequency), in calendar days (``unit='days'``) or in bars (``unit='bars'``). ``purge_days`` leaves a gap (same unit) between train and
validation and between validation and test, so that no bar is used by two adjacent
segments' runs and end effects of one segment (positions opened on its last bars)
cannot be mistaken for evidence about the next.

There is no *embargo*. In purged k-fold cross-validation (López de Prado, *Advances
in Financial Machine Learning*, 2018, ch. 7) an embargo drops training bars that
follow a test fold, because there training data may lie after the test data. In a
walk-forward analysis every window trains and validates only on bars before its own
test segment; a later window training on an earlier window's test bars uses the
past, which is legitimate. An embargo would guard nothing, so none is offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rustybt_ray.data.bundle import _is_date_only, _to_ns
from rustybt_ray.errors import ConfigError

WINDOW_TYPES = ("rolling", "anchored")
UNITS = ("sessions", "days", "bars")

__all__ = ["Span", "Window", "WindowConfig", "make_windows"]


def _int_field(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"WindowConfig.{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class WindowConfig:
    """How a walk-forward analysis cuts its date range into windows. Validated on creation.

    Args:
        train_period_days: length of each train segment (of the first one when anchored).
        validation_period_days: length of each validation segment; ``0`` means no
            validation: the best train trial is selected directly (in-sample selection,
            more prone to overfitting).
        test_period_days: length of each test (out-of-sample) segment.
        step_size_days: how far consecutive windows move (default: the test length, so
            the test segments tile the range). Must be >= ``test_period_days``: test
            segments never overlap, so their returns can be stitched.
        window_type: ``'rolling'`` (fixed-length train moving forward) or ``'anchored'``
            (train always starts at the first bar and grows by the step).
        unit: ``'sessions'`` (trading days, the default: 252 are about a year, for daily
            and intraday bundles alike), ``'days'`` (calendar days: 252 are about 8
            months of sessions) or ``'bars'`` (bundle bars).
        purge_days: gap between train and validation and between validation and test
            (or between train and test without validation), in ``unit``; default 0.
    """

    train_period_days: int
    validation_period_days: int
    test_period_days: int
    step_size_days: int | None = None
    window_type: str = "rolling"
    unit: str = "sessions"
    purge_days: int = 0

    def __post_init__(self) -> None:
        _int_field("train_period_days", self.train_period_days, 1)
        _int_field("validation_period_days", self.validation_period_days, 0)
        _int_field("test_period_days", self.test_period_days, 1)
        _int_field("purge_days", self.purge_days, 0)
        if self.step_size_days is None:
            object.__setattr__(self, "step_size_days", int(self.test_period_days))
        step = _int_field("step_size_days", self.step_size_days, 1)
        if step < self.test_period_days:
            raise ConfigError(
                f"WindowConfig.step_size_days ({step}) must be >= test_period_days ({self.test_period_days}): "
                "overlapping test segments would count the same out-of-sample bars twice")
        if self.window_type not in WINDOW_TYPES:
            raise ConfigError(f"WindowConfig.window_type must be 'rolling' or 'anchored', got {self.window_type!r}")
        if self.unit not in UNITS:
            raise ConfigError(f"WindowConfig.unit must be 'sessions' (trading days), 'days' (calendar days) "
                              f"or 'bars', got {self.unit!r}")

    @property
    def step(self) -> int:
        """The step between windows (``step_size_days``, resolved)."""
        return int(self.step_size_days)  # type: ignore[arg-type]

    @property
    def span(self) -> int:
        """Length of one whole (first) window in ``unit``: train, validation, test and purges."""
        gaps = 2 if self.validation_period_days else 1
        return self.train_period_days + self.validation_period_days + self.test_period_days + gaps * self.purge_days


@dataclass(frozen=True)
class Span:
    """A segment of a window: bars ``start <= i < stop`` of the calendar, first and last bar timestamps."""

    start: int
    stop: int
    first: np.datetime64
    last: np.datetime64

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def bars(self) -> range:
        """The bar indices of the segment."""
        return range(self.start, self.stop)


@dataclass(frozen=True)
class Window:
    """One walk-forward window: ``train``, ``validation`` (None without validation) and ``test`` segments."""

    index: int
    train: Span
    validation: Span | None
    test: Span

    def segments(self) -> dict[str, Span]:
        """The segments present, by name, in time order."""
        out = {"train": self.train}
        if self.validation is not None:
            out["validation"] = self.validation
        out["test"] = self.test
        return out


def _bounds(config: WindowConfig, k: int, origin: Any) -> list[tuple[str, Any, Any]]:
    """Segment bounds of window ``k`` as ``(name, lo, hi)`` half-open, in the config's unit from ``origin``."""
    c = config
    lo = origin + (0 if c.window_type == "anchored" else k * c.step)
    hi = origin + c.train_period_days + k * c.step
    out = [("train", lo, hi)]
    if c.validation_period_days:
        lo = hi + c.purge_days
        hi = lo + c.validation_period_days
        out.append(("validation", lo, hi))
    lo = hi + c.purge_days
    out.append(("test", lo, lo + c.test_period_days))
    return out


def make_windows(calendar: np.ndarray, config: WindowConfig, start: Any = None, end: Any = None) -> list[Window]:
    """The walk-forward windows of ``config`` over the bars of ``calendar`` between ``start`` and ``end``.

    ``calendar`` is the bundle's ascending ``datetime64`` bar timestamps; ``start`` and
    ``end`` are inclusive like a backtest's (a date-only ``end`` includes its whole day;
    None means the calendar's bounds). Only whole windows are made: the bars after the
    last test segment that does not fit are left unused.

    With ``unit='days'``, window ``k``'s train segment covers the calendar days
    ``[start + k*step, start + k*step + train)`` (anchored: ``[start, start + train +
    k*step)``), and the segments' bars are the bars whose timestamps fall in those
    day ranges. With ``unit='bars'`` the same arithmetic runs on bar indices from the
    first bar at or after ``start``.

    Raises :class:`ConfigError` when no window fits, or when a segment of a window
    holds no bar (a data gap, or days too short to hold a session).
    """
    if not isinstance(config, WindowConfig):
        raise ConfigError(f"config must be a WindowConfig, got {config!r}")
    cal = np.asarray(calendar).astype("datetime64[ns]")
    if cal.ndim != 1 or cal.shape[0] == 0:
        raise ConfigError("make_windows: the calendar is empty")
    lo_t = cal[0] if start is None else _to_ns(start)
    if end is None:
        hi_t = cal[-1] + np.timedelta64(1, "ns")
    else:
        hi_t = _to_ns(end) + (np.timedelta64(1, "D") if _is_date_only(end) else np.timedelta64(1, "ns"))
    i_lo = int(np.searchsorted(cal, lo_t, side="left"))
    i_hi = int(np.searchsorted(cal, hi_t, side="left"))
    day = np.timedelta64(1, "D")
    if config.unit == "sessions":
        # Sessions as a calendar of their own: the bar index where each one starts.
        days = cal.astype("datetime64[D]")
        firsts = np.r_[0, np.flatnonzero(days[1:] != days[:-1]) + 1, cal.shape[0]]
        s_lo = int(np.searchsorted(firsts, i_lo, side="left"))
        s_hi = int(np.searchsorted(firsts, i_hi, side="right")) - 1  # sessions that start before i_hi

    def scaled(k: int) -> list[tuple[str, Any, Any]]:
        if config.unit == "bars":
            return _bounds(config, k, i_lo)
        if config.unit == "sessions":
            return _bounds(config, k, s_lo)
        # Days: the same arithmetic on day counts, then turned into timestamps.
        return [(n, lo_t + a * day, lo_t + b * day) for n, a, b in _bounds(config, k, 0)]

    def to_index(bound: Any) -> int:
        if config.unit == "bars":
            return int(bound)
        if config.unit == "sessions":
            return min(int(firsts[bound]), i_hi)
        return int(np.searchsorted(cal, bound, side="left"))

    limit: Any = {"bars": i_hi, "sessions": s_hi if config.unit == "sessions" else 0, "days": hi_t}[config.unit]
    windows: list[Window] = []
    k = 0
    while True:
        bounds = scaled(k)
        if bounds[-1][2] > limit:
            break
        spans: dict[str, Span] = {}
        for name, a, b in bounds:
            s, e = to_index(a), to_index(b)
            if e <= s:
                raise ConfigError(
                    f"walk-forward window {k}: the {name} segment [{_show(a, config.unit)}, {_show(b, config.unit)}) "
                    f"holds no bar; lengthen {name}_period_days "
                    "or check the bundle for a gap in its data")
            spans[name] = Span(s, e, cal[s], cal[e - 1])
        windows.append(Window(k, spans["train"], spans.get("validation"), spans["test"]))
        k += 1
    if not windows:
        have = {"bars": i_hi - i_lo, "sessions": (s_hi - s_lo) if config.unit == "sessions" else 0,
                "days": int((hi_t - lo_t) // np.timedelta64(1, "D"))}[config.unit]
        raise ConfigError(
            f"no walk-forward window fits between {start} and {end}: one window needs {config.span} {config.unit} "
            f"(train {config.train_period_days} + validation {config.validation_period_days} + test "
            f"{config.test_period_days} + purges), the range has {have} {config.unit}")
    return windows


def _show(value: Any, unit: str) -> str:
    if unit == "bars":
        return f"bar {value}"
    if unit == "sessions":
        return f"session {value}"
    return str(np.datetime64(value, "D")) if isinstance(value, np.datetime64) else str(value)
