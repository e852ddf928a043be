"""What a storage sink receives and returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import attrs
import pyarrow as pa

from marketpipe.ingestion.domain.values import RAW, Series, Session, Timeframe

if TYPE_CHECKING:
    from marketpipe.storage.catalog import Catalog


@attrs.frozen(kw_only=True)
class CommitRequest:
    """Validated bars of one unit, and the partitions (symbol -> days) they replace.

    Every (symbol, day) in ``coverage`` is replaced, also those with no rows in ``table``: a day
    re-ingested with fewer bars must not keep stale ones. ``partial`` lists the covered days that
    were not final when fetched (the session had not ended, or the provider's delay had not
    passed); the catalog keeps them for the next run to fetch again.
    """

    table: pa.Table
    coverage: Mapping[str, tuple[dt.date, ...]]
    provider: str
    feed: str
    timeframe: Timeframe
    job_id: str
    adjustment: str = RAW
    session: Session = Session.REGULAR
    partial: Mapping[str, tuple[dt.date, ...]] = attrs.field(factory=dict)
    #: Rows of each (symbol, day) the validators rejected (recorded with the partition).
    rejected: Mapping[tuple[str, dt.date], int] = attrs.field(factory=dict)
    #: More ``marketpipe.*`` footer keys (a derived series' provenance).
    extra_metadata: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def series(self) -> Series:
        return Series(self.provider, self.feed, self.adjustment, self.timeframe)


class Sink(Protocol):
    #: What the dataset holds, kept in step with the sink's commits.
    catalog: Catalog

    def commit(self, request: CommitRequest) -> dict[tuple[str, dt.date], str]:
        """Commit atomically; return each covered partition's file, relative to the data root."""
        ...
