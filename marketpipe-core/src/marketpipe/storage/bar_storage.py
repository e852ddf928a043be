"""``ParquetDataStorage``: the seed's per-partition storage API over the Parquet sink."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pyarrow as pa

from marketpipe.model.bars import OHLCVBar
from marketpipe.model.partition import IngestionPartition
from marketpipe.model.values import Symbol, Timeframe
from marketpipe.plugins.sink import CommitRequest
from marketpipe.storage.parquet_sink import ParquetSink


class ParquetDataStorage:
    """Store one partition's bars: ``await store_bars(bars, symbol, trading_date)``.

    The pipeline commits whole units through :class:`~marketpipe.storage.parquet_sink.ParquetSink`;
    this is the same machinery for callers that hold one symbol-day at a time. Storing a day again
    replaces it.
    """

    def __init__(
        self,
        output_path: str | Path,
        provider: str = "manual",
        feed: str = "default",
        timeframe: Timeframe = Timeframe.M1,
        durable: bool | None = None,
    ) -> None:
        self.output_path = Path(output_path)
        self.provider = provider
        self.feed = feed
        self.timeframe = timeframe
        self._sink = ParquetSink(self.output_path, durable=durable)

    async def store_bars(
        self,
        bars: pa.Table | list[OHLCVBar],
        symbol: Symbol | str,
        trading_date: dt.date,
        job_id: str = "manual",
    ) -> IngestionPartition:
        table = bars if isinstance(bars, pa.Table) else OHLCVBar.to_table(bars)
        sym = Symbol(symbol)
        request = CommitRequest(
            table=table,
            coverage={sym.value: (trading_date,)},
            provider=self.provider,
            feed=self.feed,
            timeframe=self.timeframe,
            job_id=job_id,
        )
        paths = await asyncio.to_thread(self._sink.commit, request)
        return IngestionPartition(
            sym, trading_date, paths[(sym.value, trading_date)], table.num_rows
        )
