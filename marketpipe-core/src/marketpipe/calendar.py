"""NYSE trading sessions from a maintained exchange calendar (holidays, early closes, DST).

Days are New York calendar days. ``regular`` is the exchange's session (09:30 to 16:00, or 13:00
on early-close days); ``extended`` is 04:00 to 20:00 New York on session days.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import numpy as np

from marketpipe.errors import InvalidInputError
from marketpipe.ingestion.domain.values import Session, TimeRange

NEW_YORK = ZoneInfo("America/New_York")
_NS = 1_000_000_000
_CALENDAR_START = "1990-01-01"


def _utc_ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * _NS


@attrs.frozen
class SessionWindow:
    """The half-open interval ``[start_ns, end_ns)`` (UTC nanoseconds) of one day's session."""

    day: dt.date
    start_ns: int
    end_ns: int

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start_ns / _NS, dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.end_ns / _NS, dt.UTC)

    @property
    def midnight_ns(self) -> int:
        """New York midnight opening this day, in UTC nanoseconds."""
        return ny_midnight_ns(self.day)

    @property
    def minutes(self) -> int:
        return (self.end_ns - self.start_ns) // (60 * _NS)


def in_sessions(
    ts_ns: np.ndarray, windows: Sequence[SessionWindow], timeframe_ns: int
) -> np.ndarray:
    """Which bars ``[t, t + timeframe)`` overlap one of the session ``windows`` (a daily bar
    stamped at New York midnight overlaps its day's session; an hourly 09:00 bar the 09:30 open)."""
    if not windows:
        return np.zeros(len(ts_ns), dtype=bool)
    starts = np.array(sorted(w.start_ns for w in windows), dtype=np.int64)
    ends = np.array([w.end_ns for w in sorted(windows, key=lambda w: w.start_ns)], dtype=np.int64)
    idx = np.searchsorted(starts, ts_ns + timeframe_ns, side="left") - 1
    return np.asarray((idx >= 0) & (ts_ns < ends[np.clip(idx, 0, None)]))


def ny_midnight_ns(day: dt.date) -> int:
    return _utc_ns(dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK))


class TradingCalendar:
    """Sessions of the New York Stock Exchange (``XNYS`` from ``exchange_calendars``)."""

    def __init__(self, calendar: Any) -> None:
        self._cal = calendar
        self._first: dt.date = calendar.first_session.date()
        self._last: dt.date = calendar.last_session.date()

    def sessions(self, time_range: TimeRange) -> list[dt.date]:
        """Session days within the inclusive range."""
        if time_range.start < self._first or time_range.end > self._last:
            raise InvalidInputError(
                f"dates {time_range} are outside the trading calendar "
                f"({self._first} to {self._last})"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas deprecations inside exchange_calendars
            index = self._cal.sessions_in_range(
                time_range.start.isoformat(), time_range.end.isoformat()
            )
        return [ts.date() for ts in index]

    def is_session(self, day: dt.date) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(self._cal.is_session(day.isoformat()))

    def window(self, day: dt.date, session: Session) -> SessionWindow:
        """The session window of ``day``, which must be a session day."""
        if session is Session.EXTENDED:
            start = dt.datetime(day.year, day.month, day.day, 4, tzinfo=NEW_YORK)
            end = dt.datetime(day.year, day.month, day.day, 20, tzinfo=NEW_YORK)
            if not self.is_session(day):
                raise InvalidInputError(f"{day} is not a trading session")
            return SessionWindow(day, _utc_ns(start), _utc_ns(end))
        label = day.isoformat()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                open_ = self._cal.session_open(label)
                close = self._cal.session_close(label)
        except Exception:
            raise InvalidInputError(f"{day} is not a trading session") from None
        return SessionWindow(day, int(open_.value), int(close.value))

    def windows(self, time_range: TimeRange, session: Session) -> list[SessionWindow]:
        return [self.window(day, session) for day in self.sessions(time_range)]


@functools.cache
def nyse_calendar() -> TradingCalendar:
    """The shared NYSE calendar (built once per process: it takes about a second)."""
    import exchange_calendars

    today = dt.date.today()
    end = dt.date(today.year + 1, 12, 31).isoformat()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calendar = exchange_calendars.get_calendar("XNYS", start=_CALENDAR_START, end=end)
    return TradingCalendar(calendar)
