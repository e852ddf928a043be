"""Derive a higher timeframe from stored one-minute bars, with the conventions that make it
agree with providers' own bars.

- Each window: open of its first minute, high and low over it, close of its last minute, volume
  and trade count summed, VWAP weighted by volume. A minute with volume but no prices (the IEX
  provider's odd-lot minutes) adds its volume and trades; its prices are skipped, and a window
  whose minutes all lack prices is a bar with volume and null prices, as the IEX provider
  defines one.
- Intraday windows are aligned to the regular session's open: a 1h bar starts 09:30, 10:30...
  An extended-session series keeps the same alignment, so its regular-hours bars equal the
  regular series'; its pre-market windows count back from 09:30 (the first 1h bar, labelled
  03:30, holds 04:00-04:29).
- Daily bars hold the regular session only (09:30 to the close, early closes too), stamped at
  New York midnight of their day, like the providers' daily bars.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.calendar import TradingCalendar
from marketpipe.ingestion.domain.values import Timeframe
from marketpipe.schema import BAR_SCHEMA, conform

TARGETS = (Timeframe.M5, Timeframe.M15, Timeframe.M30, Timeframe.H1, Timeframe.D1)
_NS = 1_000_000_000


def aggregate(minutes: pa.Table, target: Timeframe, calendar: TradingCalendar) -> pa.Table:
    """``minutes`` (1-minute bars, any order) as ``target`` bars, sorted by symbol and time."""
    if target not in TARGETS:
        raise ValueError(f"cannot resample to {target.value}")
    if minutes.num_rows == 0:
        return BAR_SCHEMA.empty_table()
    table = minutes.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])
    ts = table["timestamp"].cast(pa.int64()).to_numpy()
    sessions = calendar.arrays
    midnights = sessions.midnights
    index = np.clip(np.searchsorted(midnights, ts, side="right") - 1, 0, len(midnights) - 1)
    opened = sessions.opens[index]
    if target is Timeframe.D1:
        keep = (ts >= opened) & (ts < sessions.closes[index])
        bucket = midnights[index]
    else:
        width = target.minutes * 60 * _NS
        keep = np.ones(len(ts), dtype=bool)
        bucket = opened + np.floor_divide(ts - opened, width) * width
    table = table.filter(pa.array(keep))
    bucket = bucket[keep]
    price = pc.is_valid(table["vwap"])
    volume = table["volume"].cast(pa.float64())
    work = pa.table(
        {
            "symbol": table["symbol"],
            "bucket": pa.array(bucket, pa.int64()),
            "open": table["open"],
            "high": table["high"],
            "low": table["low"],
            "close": table["close"],
            "volume": table["volume"],
            "trade_count": table["trade_count"],
            "pv": pc.multiply(table["vwap"], volume),
            "pvol": pc.if_else(price, volume, 0.0),
        }
    )
    grouped = work.group_by(["symbol", "bucket"], use_threads=False).aggregate(
        [
            ("open", "first"),
            ("high", "max"),
            ("low", "min"),
            ("close", "last"),
            ("volume", "sum"),
            ("trade_count", "sum"),
            ("pv", "sum"),
            ("pvol", "sum"),
        ]
    )
    pvol = grouped["pvol_sum"]
    vwap = pc.if_else(
        pc.greater(pvol, 0.0), pc.divide(grouped["pv_sum"], pc.max_element_wise(pvol, 1.0)), None
    )
    out = pa.table(
        {
            "symbol": grouped["symbol"],
            "timestamp": grouped["bucket"].cast(pa.timestamp("ns", tz="UTC")),
            "open": grouped["open_first"],
            "high": grouped["high_max"],
            "low": grouped["low_min"],
            "close": grouped["close_last"],
            "volume": grouped["volume_sum"],
            "trade_count": grouped["trade_count_sum"],
            "vwap": vwap,
        }
    )
    return conform(out).sort_by([("symbol", "ascending"), ("timestamp", "ascending")])
