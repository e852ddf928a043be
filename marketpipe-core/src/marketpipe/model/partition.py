"""``IngestionPartition``: the checkpoint unit, one symbol on one trading day."""

from __future__ import annotations

import datetime as dt

import attrs

from marketpipe.model.values import Symbol


@attrs.frozen
class IngestionPartition:
    """One symbol's bars for one New York trading day, and the committed file that holds them.

    Files hold many partitions (one file per partition would be far too small to write or query
    fast); ``path`` is relative to the data root.
    """

    symbol: Symbol
    trading_date: dt.date
    path: str = ""
    bars_count: int = 0
