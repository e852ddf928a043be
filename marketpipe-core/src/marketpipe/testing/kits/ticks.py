"""Valid synthetic trades and quotes for the kits: a few ticks a minute through the first half
hour of each regular session, nanosecond stamps, and ticks that share a stamp (their order is
the provider's, and a sink must keep it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.schema import schema_of
from marketpipe.model.ticks import CANCELED, REGULAR
from marketpipe.model.values import Session, Timeframe

MINUTES = 30
PER_MINUTE = 4


def kit_ticks(
    kind: Timeframe, symbols: Iterable[str], days: Iterable[dt.date], base: float = 100.0
) -> pa.Table:
    """``kind``'s ticks of ``symbols`` on ``days``, ordered by symbol then time: four a minute,
    the second and third sharing a stamp (the third priced lower, so a sink that reorders
    them is seen), every seventh trade canceled."""
    calendar = nyse_calendar()
    schema = schema_of(kind)
    parts = []
    for n, symbol in enumerate(sorted(symbols)):
        for day in sorted(days):
            start = calendar.window(day, Session.REGULAR).start_ns
            count = MINUTES * PER_MINUTE
            i = np.arange(count, dtype=np.int64)
            step = np.array([0, 11_000_000_789, 11_000_000_789, 40_000_000_001], dtype=np.int64)
            stamp = start + (i // PER_MINUTE) * 60_000_000_000 + step[i % PER_MINUTE]
            price = np.round(base + n + day.toordinal() % 7 + i * 0.01 - (i % 4 == 2) * 0.5, 2)
            symbol_column = pa.array([symbol] * count, pa.string())
            stamps = pa.array(stamp, pa.timestamp("ns", tz="UTC"))
            conditions = pa.array([["@", "T"] if k % 3 == 0 else [] for k in range(count)])
            if kind is Timeframe.TRADES:
                columns = [
                    symbol_column,
                    stamps,
                    pa.array(stamp + 150_000, pa.timestamp("ns", tz="UTC")),
                    pa.array(price),
                    pa.array(100.0 + i % 5 + (i % 10 == 0) * 0.25),  # a fractional share
                    pa.array(["V"] * count),
                    pa.array([str(k + 1) for k in range(count)]),
                    conditions,
                    pa.array(["C"] * count),
                    pa.array([CANCELED if k % 7 == 6 else REGULAR for k in range(count)]),
                    pa.array(i + 1, pa.int64()),
                ]
            else:
                columns = [
                    symbol_column,
                    stamps,
                    pa.array(price - 0.01),
                    pa.array(100.0 + i % 3 * 100),
                    pa.array(price + 0.01),
                    pa.array(200.0 + i % 2 * 100),
                    pa.array(["V"] * count),
                    pa.array(["Q"] * count),
                    conditions,
                    pa.array(["C"] * count),
                    pa.array(i + 1, pa.int64()),
                ]
            parts.append(pa.Table.from_arrays(columns, schema=schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()
