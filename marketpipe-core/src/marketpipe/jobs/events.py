"""Domain events of an ingestion job, published after the checkpoint they describe."""

from __future__ import annotations

import datetime as dt

import attrs

from marketpipe.model.partition import IngestionPartition
from marketpipe.model.values import IngestionJobId, Symbol


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen(kw_only=True)
class DomainEvent:
    occurred_at: dt.datetime = attrs.field(factory=_now)

    @property
    def name(self) -> str:
        return type(self).__name__


@attrs.frozen(kw_only=True)
class IngestionJobStarted(DomainEvent):
    """Work began: on the whole job (``job.start()``: no symbol or day, unless the job id is a
    composite ``SYMBOL_DAY``), or on one partition (symbol, trading day) of it."""

    job_id: IngestionJobId
    symbol: Symbol | None = None
    trading_date: dt.date | None = None


@attrs.frozen(kw_only=True)
class IngestionBatchProcessed(DomainEvent):
    """A partition's bars were validated, committed and checkpointed."""

    job_id: IngestionJobId
    symbol: Symbol
    bars_count: int
    partition: IngestionPartition
    rejected_count: int = 0


@attrs.frozen(kw_only=True)
class IngestionPartitionFailed(DomainEvent):
    job_id: IngestionJobId
    symbol: Symbol
    trading_date: dt.date
    error_message: str


@attrs.frozen(kw_only=True)
class IngestionJobCompleted(DomainEvent):
    job_id: IngestionJobId
    symbols_processed: int
    partitions_processed: int
    total_bars: int
    rejected_rows: int


@attrs.frozen(kw_only=True)
class IngestionJobFailed(DomainEvent):
    job_id: IngestionJobId
    error_message: str
    partitions_failed: int = 0


@attrs.frozen(kw_only=True)
class IngestionJobPlanned(DomainEvent):
    """The job's partitions are planned: how many in all, how many still to do, in how many
    units, and how many the dataset already held complete (skipped, not fetched)."""

    job_id: IngestionJobId
    partitions_total: int
    partitions_pending: int
    units: int
    partitions_stored: int = 0


@attrs.frozen(kw_only=True)
class IngestionUnitStarted(DomainEvent):
    """Work on one unit (symbols x days fetched, validated and committed together) began."""

    job_id: IngestionJobId
    symbols: tuple[str, ...]
    first_day: dt.date
    last_day: dt.date
    partitions: int


@attrs.frozen(kw_only=True)
class IngestionJobCancelled(DomainEvent):
    """The job stopped on request; what was committed stays, the rest waits for a resume."""

    job_id: IngestionJobId
    partitions_remaining: int


@attrs.frozen(kw_only=True)
class IngestionProviderNote(DomainEvent):
    """The provider reported something about its source that the user should know (a truncated
    file, a gap in a feed's sequence numbers); the data before it was kept."""

    job_id: IngestionJobId
    message: str
