"""``IngestionPartition``: the checkpoint unit, one symbol on one trading day."""

from __future__ import annotations

import datetime as dt
from typing import TypeAlias

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


#: A partition's identity wherever one is named (planning, the job store, the catalog, the
#: sinks, the kits): ``(symbol, day)``, one symbol on one New York trading day.
PartitionKey: TypeAlias = tuple[str, dt.date]
