"""Helpers for core tests: a test provider, valid bars, and real entry-point plugins written as
dist-info folders (discovered by importlib.metadata like any installed distribution)."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from marketpipe.model.calendar import SessionWindow, nyse_calendar
from marketpipe.model.errors import SymbolError
from marketpipe.model.request import FetchRequest
from marketpipe.model.schema import bars_batch
from marketpipe.model.values import Session, Timeframe
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.sink import CommitRequest

MINUTE = 60 * 1_000_000_000


def simple_bars(symbol: str, window: SessionWindow, step_minutes: int = 1) -> pa.RecordBatch:
    """Valid, deterministic bars covering a window: price 100 + minute/100."""
    step = step_minutes * MINUTE
    first = window.midnight_ns + (window.start_ns - window.midnight_ns) // step * step
    ts = np.arange(first, window.end_ns, step, dtype=np.int64)
    base = 100.0 + np.arange(len(ts)) / 100.0
    return bars_batch(
        symbol,
        ts,
        base,
        base + 0.5,
        base - 0.5,
        base + 0.1,
        np.full(len(ts), 10, dtype=np.int64),
        np.full(len(ts), 2),
        base,
    )


class StepProvider(IMarketDataProvider):
    """Test provider: one bar per minute of every window; optional failure for one symbol (a
    ``SymbolError``, about that symbol). Each request it is asked is appended to ``calls``."""

    feed = "test"

    def __init__(
        self,
        fail_symbol: str = "",
        token: object = None,
        calls: list[FetchRequest] | None = None,
        empty_symbol: str = "",
    ) -> None:
        self.fail_symbol = fail_symbol
        self.empty_symbol = empty_symbol
        self.token = token
        self.calls = calls if calls is not None else []

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        self.calls.append(request)
        for symbol in request.symbols:
            if symbol.value == self.fail_symbol:
                raise SymbolError(f"upstream refused {symbol}")
            if symbol.value == self.empty_symbol:
                continue
            for window in request.windows:
                yield simple_bars(symbol.value, window, request.timeframe.minutes)


def write_plugin(
    site: Path, dist: str, module: str, source: str, entry_name: str | None = None
) -> None:
    """A minimal installed distribution: a module and its dist-info with one entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[marketpipe]\n{entry_name or module} = {module}\n")


def commit(
    sink: Any,
    symbols: list[str],
    days: list[dt.date],
    job: str = "job1",
    partial: dict[str, tuple[dt.date, ...]] | None = None,
    adjustment: str = "raw",
    step_minutes: int = 1,
) -> dict:
    """Commit a Fake-like series' bars of ``symbols`` x ``days`` (regular session) through
    ``sink``: what a unit of ``job`` commits."""
    calendar = nyse_calendar()
    table = pa.Table.from_batches(
        [
            simple_bars(s, calendar.window(d, Session.REGULAR), step_minutes)
            for s in symbols
            for d in days
        ]
    )
    result: dict = sink.commit(
        CommitRequest(
            table=table,
            coverage={s: tuple(days) for s in symbols},
            provider="fake",
            feed="sim",
            timeframe=Timeframe.M1,
            job_id=job,
            adjustment=adjustment,
            partial=partial or {},
        )
    )
    return result
