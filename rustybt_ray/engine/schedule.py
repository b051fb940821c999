"""``schedule_function`` rules: zipline's ``date_rules`` and ``time_rules`` as bar masks.

Each rule turns into a boolean mask over the bundle calendar once, before the run,
so the event loop only asks "does anything run on this bar?". Sessions (trading
days) come from the bundle's own calendar: a week starts on its first trading day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rustybt_ray.errors import StrategyError


@dataclass(frozen=True)
class DateRule:
    """Which sessions a scheduled function runs on."""

    kind: str  #: "every_day", "week_start", "week_end", "month_start" or "month_end"
    days_offset: int = 0

    def mask(self, sessions: np.ndarray) -> np.ndarray:
        """Boolean mask over unique, ascending ``sessions`` (``datetime64[D]``)."""
        n = sessions.shape[0]
        if self.kind == "every_day":
            return np.ones(n, dtype=bool)
        if self.kind.startswith("week"):
            # Monday-based week number: days since the epoch (a Thursday) shifted by 3.
            key = (sessions.astype(np.int64) + 3) // 7
        else:
            key = sessions.astype("datetime64[M]").astype(np.int64)
        new_group = np.r_[True, key[1:] != key[:-1]]
        starts = np.flatnonzero(new_group)
        ends = np.r_[starts[1:], n]
        out = np.zeros(n, dtype=bool)
        if self.kind.endswith("start"):
            pos = starts + self.days_offset
            ok = pos < ends
        else:
            pos = ends - 1 - self.days_offset
            ok = pos >= starts
        out[pos[ok]] = True
        return out


@dataclass(frozen=True)
class TimeRule:
    """When within a session a scheduled function runs (ignored for daily bars)."""

    anchor: str  #: "market_open" or "market_close"
    offset_minutes: int = 0

    def mask(self, calendar: np.ndarray, session_id: np.ndarray) -> np.ndarray:
        """Boolean mask over bars: the one bar per session this rule picks."""
        n = calendar.shape[0]
        new = np.r_[True, session_id[1:] != session_id[:-1]]
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], n]
        ts = calendar.astype(np.int64)
        off = np.int64(self.offset_minutes) * 60_000_000_000
        out = np.zeros(n, dtype=bool)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            if self.anchor == "market_open":
                i = s + int(np.searchsorted(ts[s:e], ts[s] + off, side="left"))
                if i < e:
                    out[i] = True
            else:
                i = s + int(np.searchsorted(ts[s:e], ts[e - 1] - off, side="right")) - 1
                if i >= s:
                    out[i] = True
        return out


def _offset(days_offset: int) -> int:
    if not isinstance(days_offset, int) or days_offset < 0:
        raise StrategyError(f"days_offset must be an int >= 0, got {days_offset!r}")
    return days_offset


class date_rules:  # noqa: N801 - zipline's spelling, so ported code keeps working
    """Date rules for ``schedule_function``, named as in zipline."""

    @staticmethod
    def every_day() -> DateRule:
        """Every session."""
        return DateRule("every_day")

    @staticmethod
    def week_start(days_offset: int = 0) -> DateRule:
        """The first session of each week, plus ``days_offset`` sessions."""
        return DateRule("week_start", _offset(days_offset))

    @staticmethod
    def week_end(days_offset: int = 0) -> DateRule:
        """The last session of each week, minus ``days_offset`` sessions."""
        return DateRule("week_end", _offset(days_offset))

    @staticmethod
    def month_start(days_offset: int = 0) -> DateRule:
        """The first session of each month, plus ``days_offset`` sessions."""
        return DateRule("month_start", _offset(days_offset))

    @staticmethod
    def month_end(days_offset: int = 0) -> DateRule:
        """The last session of each month, minus ``days_offset`` sessions."""
        return DateRule("month_end", _offset(days_offset))


class time_rules:  # noqa: N801 - zipline's spelling
    """Time rules for ``schedule_function``, named as in zipline (bar open times)."""

    @staticmethod
    def market_open(minutes: int = 0, hours: int = 0) -> TimeRule:
        """The first bar of the session at or after the open plus the offset."""
        return TimeRule("market_open", int(hours) * 60 + int(minutes))

    @staticmethod
    def market_close(minutes: int = 0, hours: int = 0) -> TimeRule:
        """The last bar of the session at or before the last bar minus the offset."""
        return TimeRule("market_close", int(hours) * 60 + int(minutes))


@dataclass(frozen=True)
class Scheduled:
    """A function with the rules that say when it runs."""

    func: Callable[..., object]
    date_rule: DateRule
    time_rule: TimeRule

    def mask(self, calendar: np.ndarray, daily: bool) -> np.ndarray:
        """Bars (over the whole calendar) on which ``func`` runs."""
        days = calendar.astype("datetime64[D]")
        sessions, session_id = np.unique(days, return_inverse=True)
        on_day = self.date_rule.mask(sessions)[session_id]
        if daily:
            return on_day
        return on_day & self.time_rule.mask(calendar, session_id)
