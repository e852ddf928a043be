"""``OHLCVBar``: the per-bar object for callers who want objects, built on demand from Arrow."""

from __future__ import annotations

import datetime as dt

import attrs
import pyarrow as pa

from marketpipe.model.schema import conform
from marketpipe.model.values import Symbol


@attrs.frozen
class OHLCVBar:
    """One bar. The pipeline never builds these; ``from_table`` does, for the per-bar API."""

    symbol: Symbol
    timestamp: dt.datetime
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: int
    trade_count: int | None = None
    vwap: float | None = None

    @classmethod
    def from_table(cls, table: pa.Table | pa.RecordBatch) -> list[OHLCVBar]:
        data = conform(table).to_pydict()
        return [
            cls(
                Symbol(sym),
                ts,
                o,
                h,
                lo,
                c,
                v,
                n,
                w,
            )
            for sym, ts, o, h, lo, c, v, n, w in zip(
                data["symbol"],
                data["timestamp"],
                data["open"],
                data["high"],
                data["low"],
                data["close"],
                data["volume"],
                data["trade_count"],
                data["vwap"],
                strict=True,
            )
        ]

    @staticmethod
    def to_table(bars: list[OHLCVBar]) -> pa.Table:
        """Canonical table from bar objects (for callers of the per-bar storage API)."""
        from marketpipe.model.schema import BAR_SCHEMA

        columns = {
            "symbol": [b.symbol.value for b in bars],
            "timestamp": [b.timestamp for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
            "trade_count": [b.trade_count for b in bars],
            "vwap": [b.vwap for b in bars],
        }
        return pa.Table.from_pydict(columns, schema=BAR_SCHEMA)
