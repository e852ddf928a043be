"""Valid synthetic bars for the kits: one bar per minute of each regular session, OHLC
consistent, prices a slow walk from ``base``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe.model.values import Session


def kit_bars(
    symbols: Iterable[str], days: Iterable[dt.date], base: float = 100.0, every: int = 1
) -> pa.Table:
    """Bars of ``symbols`` on ``days`` (every ``every``-th minute), ordered by symbol and time."""
    calendar = nyse_calendar()
    batches = []
    for n, symbol in enumerate(sorted(symbols)):
        for day in sorted(days):
            window = calendar.window(day, Session.REGULAR)
            minutes = (window.end_ns - window.start_ns) // 60_000_000_000
            offsets = np.arange(0, minutes, every, dtype="int64")
            ts = window.start_ns + offsets * 60_000_000_000
            close = base + n + day.toordinal() % 7 + offsets * 0.01
            batches.append(
                pa.RecordBatch.from_arrays(
                    [
                        pa.array([symbol] * len(ts), pa.string()),
                        pa.array(ts, pa.timestamp("ns", tz="UTC")),
                        pa.array(close - 0.02),
                        pa.array(close + 0.05),
                        pa.array(close - 0.05),
                        pa.array(close),
                        pa.array(1000 + offsets, pa.int64()),
                        pa.array(10 + offsets % 5, pa.int64()),
                        pa.array(close - 0.01),
                    ],
                    schema=BAR_SCHEMA,
                )
            )
    return (
        pa.Table.from_batches(batches, schema=BAR_SCHEMA) if batches else BAR_SCHEMA.empty_table()
    )
