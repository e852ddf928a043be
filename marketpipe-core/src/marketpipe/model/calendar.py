"""NYSE trading sessions from a maintained exchange calendar (holidays, early closes, DST).

Days are New York calendar days. ``regular`` is the exchange's session (09:30 to 16:00, or 13:00
on early-close days); ``extended`` is 04:00 to 20:00 New York on session days.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import functools
import importlib.metadata
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import numpy as np
import pyarrow as pa

from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import Session, TimeRange

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
    if len(windows) <= 4:
        # A unit's few days compared in turn: a third of the time of the search below, which
        # was a quarter of validating a whole market's day.
        inside = np.zeros(len(ts_ns), dtype=bool)
        for w in windows:
            inside |= (ts_ns > w.start_ns - timeframe_ns) & (ts_ns < w.end_ns)
        return inside
    starts = np.array(sorted(w.start_ns for w in windows), dtype=np.int64)
    ends = np.array([w.end_ns for w in sorted(windows, key=lambda w: w.start_ns)], dtype=np.int64)
    idx = np.searchsorted(starts, ts_ns + timeframe_ns, side="left") - 1
    return np.asarray((idx >= 0) & (ts_ns < ends[np.clip(idx, 0, None)]))


def ny_midnight_ns(day: dt.date) -> int:
    return _utc_ns(dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK))


def day_bounds(start: dt.date, end: dt.date) -> tuple[pa.Scalar, pa.Scalar]:
    """``[start, end]`` in New York days as UTC timestamps: ``start``'s midnight (included) to
    the midnight after ``end`` (excluded)."""
    kind = pa.timestamp("ns", tz="UTC")
    lo = pa.scalar(ny_midnight_ns(start), pa.int64()).cast(kind)
    hi = pa.scalar(ny_midnight_ns(end + dt.timedelta(days=1)), pa.int64()).cast(kind)
    return lo, hi


@attrs.frozen(eq=False)
class SessionArrays:
    """Session days as date ordinals, with their regular open and close and the New York
    midnight opening them (UTC nanoseconds), aligned index for index."""

    ordinals: np.ndarray
    opens: np.ndarray
    closes: np.ndarray
    midnights: np.ndarray

    @property
    def regular_minutes(self) -> np.ndarray:
        minutes: np.ndarray = (self.closes - self.opens) // (60 * _NS)
        return minutes


class TradingCalendar:
    """NYSE sessions: each session day with its regular open and close (UTC nanoseconds).

    Built from ``exchange_calendars`` (``XNYS``) and kept as plain sorted arrays, so lookups are a
    binary search and a process that finds the schedule in its cache never imports pandas.
    """

    def __init__(
        self, days: Sequence[dt.date], opens: Sequence[int], closes: Sequence[int]
    ) -> None:
        self._days = list(days)
        self._index = {day: i for i, day in enumerate(self._days)}
        self._opens = list(opens)
        self._closes = list(closes)
        self._first, self._last = self._days[0], self._days[-1]

    @classmethod
    def from_exchange_calendars(cls, calendar: Any) -> TradingCalendar:
        schedule = calendar.schedule
        return cls(
            [ts.date() for ts in schedule.index],
            [int(v) for v in schedule["open"].astype("int64")],
            [int(v) for v in schedule["close"].astype("int64")],
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "days": [d.isoformat() for d in self._days],
                "opens": self._opens,
                "closes": self._closes,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TradingCalendar:
        data = json.loads(text)
        return cls([dt.date.fromisoformat(d) for d in data["days"]], data["opens"], data["closes"])

    def sessions(self, time_range: TimeRange) -> list[dt.date]:
        """Session days within the inclusive range."""
        if time_range.start < self._first or time_range.end > self._last:
            raise InvalidInputError(
                f"dates {time_range} are outside the trading calendar "
                f"({self._first} to {self._last})"
            )
        lo = bisect.bisect_left(self._days, time_range.start)
        hi = bisect.bisect_right(self._days, time_range.end)
        return self._days[lo:hi]

    @functools.cached_property
    def arrays(self) -> SessionArrays:
        """Every session as arrays, built once per calendar (for vectorised work)."""
        return SessionArrays(
            ordinals=np.array([d.toordinal() for d in self._days], dtype=np.int64),
            opens=np.array(self._opens, dtype=np.int64),
            closes=np.array(self._closes, dtype=np.int64),
            midnights=np.array([ny_midnight_ns(d) for d in self._days], dtype=np.int64),
        )

    def is_session(self, day: dt.date) -> bool:
        return day in self._index

    def window(self, day: dt.date, session: Session) -> SessionWindow:
        """The session window of ``day``, which must be a session day."""
        i = self._index.get(day)
        if i is None:
            raise InvalidInputError(f"{day} is not a trading session")
        if session is Session.EXTENDED:
            start = dt.datetime(day.year, day.month, day.day, 4, tzinfo=NEW_YORK)
            end = dt.datetime(day.year, day.month, day.day, 20, tzinfo=NEW_YORK)
            return SessionWindow(day, _utc_ns(start), _utc_ns(end))
        return SessionWindow(day, self._opens[i], self._closes[i])

    def windows(self, time_range: TimeRange, session: Session) -> list[SessionWindow]:
        return [self.window(day, session) for day in self.sessions(time_range)]

    def last_completed(
        self, session: Session, now: dt.datetime, delay: dt.timedelta = dt.timedelta(0)
    ) -> dt.date:
        """The latest session day whose ``session`` ended at least ``delay`` before ``now``
        (a provider's data for the last minutes of a session may not be final at once)."""
        cutoff = _utc_ns(now) - int(delay.total_seconds()) * _NS
        i = bisect.bisect_right(self._days, now.astimezone(NEW_YORK).date()) - 1
        while i >= 0:
            if self.window(self._days[i], session).end_ns <= cutoff:
                return self._days[i]
            i -= 1
        raise InvalidInputError(f"no completed session before {now.isoformat()}")

    def is_complete(
        self, window: SessionWindow, fetched: dt.datetime, delay: dt.timedelta = dt.timedelta(0)
    ) -> bool:
        """Whether data fetched at ``fetched`` held ``window``'s whole session (else partial)."""
        return window.end_ns + int(delay.total_seconds()) * _NS <= _utc_ns(fetched)


def _cache_file(end: str) -> Path | None:
    try:
        version = importlib.metadata.version("exchange-calendars")
    except importlib.metadata.PackageNotFoundError:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marketpipe" / f"xnys-{version}-{_CALENDAR_START}-{end}.json"


@functools.cache
def nyse_calendar() -> TradingCalendar:
    """The shared NYSE calendar, built once per process from ``exchange_calendars`` and cached
    on disk per calendar version (building it imports pandas and takes about a second)."""
    today = dt.date.today()
    end = dt.date(today.year + 1, 12, 31).isoformat()
    cache = _cache_file(end)
    if cache is not None and cache.is_file():
        try:
            return TradingCalendar.from_json(cache.read_text())
        except (ValueError, KeyError, OSError):
            pass  # a damaged cache is rebuilt below
    import exchange_calendars

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecations inside exchange_calendars
        calendar = TradingCalendar.from_exchange_calendars(
            exchange_calendars.get_calendar("XNYS", start=_CALENDAR_START, end=end)
        )
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only home only costs the next run a second
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(calendar.to_json())
            os.replace(tmp, cache)
    return calendar
