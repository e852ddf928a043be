"""``FetchRequest``: the whole request a provider receives for one unit of work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from marketpipe.model.calendar import SessionWindow
from marketpipe.model.values import Session, Symbol, Timeframe


@attrs.frozen(kw_only=True)
class FetchRequest:
    """Symbols x session days, with each day's session window already resolved.

    A provider fetches the request however suits it (per symbol, several symbols per call, one file
    per day) and yields canonical Arrow batches. Bars outside ``windows`` are rejected downstream.
    """

    symbols: tuple[Symbol, ...]
    windows: tuple[SessionWindow, ...]
    timeframe: Timeframe
    session: Session
    settings: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def days(self) -> tuple[dt.date, ...]:
        return tuple(w.day for w in self.windows)

    @property
    def start_ns(self) -> int:
        return min(w.start_ns for w in self.windows)

    @property
    def end_ns(self) -> int:
        return max(w.end_ns for w in self.windows)
