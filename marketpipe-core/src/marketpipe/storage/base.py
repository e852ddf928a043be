"""What a storage sink receives and returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Protocol

import attrs
import pyarrow as pa

from marketpipe.ingestion.domain.values import Timeframe


@attrs.frozen(kw_only=True)
class CommitRequest:
    """Validated bars of one unit, and the partitions (symbol -> days) they replace.

    Every (symbol, day) in ``coverage`` is replaced, also those with no rows in ``table``: a day
    re-ingested with fewer bars must not keep stale ones.
    """

    table: pa.Table
    coverage: Mapping[str, tuple[dt.date, ...]]
    provider: str
    feed: str
    timeframe: Timeframe
    job_id: str


class Sink(Protocol):
    def commit(self, request: CommitRequest) -> dict[tuple[str, dt.date], str]:
        """Commit atomically; return each covered partition's file, relative to the data root."""
        ...

    def stored(
        self, provider: str, feed: str, timeframe: Timeframe, keys: set[tuple[str, dt.date]]
    ) -> dict[tuple[str, dt.date], str]:
        """Which of ``keys`` (symbol, day) the dataset holds rows for, and in which file."""
        ...
