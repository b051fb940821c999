"""``schedule_function`` rules: zipline's ``date_rules`` and ``time_rules`` as bar masks.

Each rule turns into a boolean mask over the bundle calendar once, before the run,
so the event loop only asks "does anything run on this bar?". Sessions (trading
days) come from the bundle's own calendar: a week starts on its first trading day,
and on intraday bundles a session opens at its first bar and closes after its last
(early closes and late opens need no exchange calendar). A function runs at most
once per bar, before ``handle_data``.

Half days (``schedule_function(..., half_days=False)``): on intraday bundles a half
day is a session whose last bar is stamped more than an hour before the usual one
(the most common last-bar time of day over the bundle's sessions), e.g. a 12:59 last
minute bar on a US equity calendar whose sessions usually end with a 15:59 bar. The
hour of slack keeps a session that only lacks its last few bars, or the one-hour
shift of a daylight-saving change in UTC-stamped data, from counting as a half day.
``half_days=True`` (zipline's default) runs on them too. Bars are naive
exchange-local times, so "time of day" is the exchange's. On daily bundles a bar
says nothing about the session's close, so ``half_days`` is ignored there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rustybt_ray.data.frequency import session_index
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
    """When within a session a scheduled function runs (ignored for daily bars).

    Bars are stamped with their open time. A session opens at its first bar's stamp
    and closes at its last bar's stamp plus one bar, since the engine has no exchange
    calendar, only the bars. ``market_open`` picks the first bar that opens at or after
    open + offset. ``market_close`` picks the last bar that closes at or before
    close - offset, i.e. the last bar stamped at or before ``last stamp - offset``. So
    ``market_close()`` is the last bar. A session too short for the offset has no such
    bar, and the function does not run that day.
    """

    anchor: str  #: "market_open", "market_close" or "every_bar"
    offset_minutes: int = 0

    def mask(self, calendar: np.ndarray, session_id: np.ndarray) -> np.ndarray:
        """Boolean mask over bars: the one bar per session this rule picks (every bar for ``every_bar``)."""
        n = calendar.shape[0]
        if self.anchor == "every_bar":
            return np.ones(n, dtype=bool)
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        new = np.r_[True, session_id[1:] != session_id[:-1]]
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], n]
        ts = calendar.astype("datetime64[ns]").astype(np.int64)
        off = np.int64(self.offset_minutes) * 60_000_000_000
        # Stamps ascend over the whole calendar, so one searchsorted serves all sessions;
        # the bounds checks keep each pick inside its own session.
        if self.anchor == "market_open":
            pick = np.searchsorted(ts, ts[starts] + off, side="left")
            ok = pick < ends
        else:
            pick = np.searchsorted(ts, ts[ends - 1] - off, side="right") - 1
            ok = pick >= starts
        out[pick[ok]] = True
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


def _time_offset(rule: str, minutes: Any, hours: Any, offset: Any) -> int:
    """The offset in whole minutes, from ``minutes``/``hours`` or a ``timedelta`` ``offset``."""
    for name, value in (("minutes", minutes), ("hours", hours)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise StrategyError(
                f"time_rules.{rule}({name}={value!r}): {name} must be an int >= 0, e.g. {rule}(minutes=30)"
            )
    if offset is None:
        return int(hours) * 60 + int(minutes)
    if minutes or hours:
        raise StrategyError(f"time_rules.{rule}: pass either offset= or minutes=/hours=, not both")
    try:
        ns = int(np.timedelta64(offset, "ns").astype(np.int64))
    except (TypeError, ValueError):
        raise StrategyError(
            f"time_rules.{rule}(offset={offset!r}): offset must be a timedelta, e.g. datetime.timedelta(minutes=30)"
        ) from None
    if ns < 0 or ns % 60_000_000_000:
        raise StrategyError(
            f"time_rules.{rule}(offset={offset!r}): offset must be a whole number of minutes >= 0 "
            "(bars are whole minutes long)"
        )
    return ns // 60_000_000_000


class time_rules:  # noqa: N801 - zipline's spelling
    """Time rules for ``schedule_function``, named as in zipline (bars stamped with their open time).

    On daily bundles a time rule changes nothing: every session is one bar.
    """

    @staticmethod
    def market_open(minutes: int = 0, hours: int = 0, offset: Any = None) -> TimeRule:
        """The first bar of the session that opens at or after the session's first bar plus the offset."""
        return TimeRule("market_open", _time_offset("market_open", minutes, hours, offset))

    @staticmethod
    def market_close(minutes: int = 0, hours: int = 0, offset: Any = None) -> TimeRule:
        """The last bar of the session stamped at or before the session's last bar minus the offset."""
        return TimeRule("market_close", _time_offset("market_close", minutes, hours, offset))

    @staticmethod
    def every_minute() -> TimeRule:
        """Every bar of the session (zipline's name; on hourly bars, every hour)."""
        return TimeRule("every_bar")


#: A session is a half day when its last bar is stamped more than this before the usual last bar.
HALF_DAY_SLACK_NS = 60 * 60_000_000_000


def half_day_sessions(calendar: np.ndarray, session_id: np.ndarray) -> np.ndarray:
    """Boolean mask over sessions: the early closes of an intraday calendar (see the module docstring).

    The usual close is the most common time of day of a session's last bar (ties: the
    latest). Sessions whose last bar is more than :data:`HALF_DAY_SLACK_NS` earlier
    are half days.
    """
    n = calendar.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    ts = calendar.astype("datetime64[ns]").astype(np.int64)
    last = np.flatnonzero(np.r_[session_id[1:] != session_id[:-1], True])
    day_ns = np.int64(86_400 * 1_000_000_000)
    tod = ts[last] % day_ns
    values, counts = np.unique(tod, return_counts=True)
    usual = values[np.flatnonzero(counts == counts.max())[-1]]
    return tod < usual - HALF_DAY_SLACK_NS


@dataclass(frozen=True)
class Scheduled:
    """A function with the rules that say when it runs.

    ``half_days=False`` skips the half days of an intraday calendar (see the module
    docstring); it is ignored on daily bundles.
    """

    func: Callable[..., object]
    date_rule: DateRule
    time_rule: TimeRule
    half_days: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.half_days, (bool, np.bool_)):
            raise StrategyError(f"schedule_function(half_days={self.half_days!r}): half_days must be True or False")

    def mask(self, calendar: np.ndarray, daily: bool) -> np.ndarray:
        """Bars (over the whole calendar) on which ``func`` runs."""
        session_id, _, sessions = session_index(calendar)
        on_day = self.date_rule.mask(sessions)
        if daily:
            return on_day[session_id]
        if not self.half_days:
            on_day = on_day & ~half_day_sessions(calendar, session_id)
        return on_day[session_id] & self.time_rule.mask(calendar, session_id)
