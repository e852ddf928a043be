"""The ``IngestionJob`` aggregate, its configuration and its guarded state machine."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from marketpipe.jobs.events import (
    DomainEvent,
    IngestionBatchProcessed,
    IngestionJobCancelled,
    IngestionJobCompleted,
    IngestionJobFailed,
    IngestionJobPlanned,
    IngestionJobStarted,
    IngestionPartitionFailed,
    IngestionProviderNote,
    IngestionUnitStarted,
)
from marketpipe.model.errors import InvalidInputError, InvalidStateTransition
from marketpipe.model.partition import IngestionPartition
from marketpipe.model.values import (
    IngestionJobId,
    Session,
    Symbol,
    Timeframe,
    TimeRange,
    symbols_of,
)


class ProcessingState(enum.Enum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (
            ProcessingState.COMPLETED,
            ProcessingState.FAILED,
            ProcessingState.CANCELLED,
        )


# Which states each transition may start from. FAILED and CANCELLED jobs can be started again:
# that is a resume, which fetches only what is not committed.
_ALLOWED: dict[str, tuple[ProcessingState, ...]] = {
    "start": (ProcessingState.PENDING, ProcessingState.FAILED, ProcessingState.CANCELLED),
    # A resume also picks up a job left IN_PROGRESS by a process that died (no lock held).
    "resume": (
        ProcessingState.FAILED,
        ProcessingState.CANCELLED,
        ProcessingState.IN_PROGRESS,
        ProcessingState.PENDING,
    ),
    "mark_symbol_processed": (ProcessingState.IN_PROGRESS,),
    "complete": (ProcessingState.IN_PROGRESS,),
    "fail": (ProcessingState.PENDING, ProcessingState.IN_PROGRESS),
    "cancel": (ProcessingState.PENDING, ProcessingState.IN_PROGRESS),
}


def _positive(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise InvalidInputError(f"{attribute.name} must be at least 1, got {value}")


def _timeframe(value: str | Timeframe) -> Timeframe:
    return Timeframe.parse(value)


def _session(value: str | Session) -> Session:
    return Session.parse(value)


def _str_dict(value: Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()}


@attrs.frozen(kw_only=True)
class IngestionConfiguration:
    """How a job runs. ``settings`` holds the provider's non-secret settings only.

    ``max_retries`` is kept for the seed's API and stored jobs; retrying is the provider
    connector's policy alone (``ClientConfig.max_attempts``), never multiplied here."""

    provider: str
    batch_size: int = attrs.field(default=100_000, validator=_positive)
    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    max_concurrency: int = attrs.field(default=2, validator=_positive)
    timeframe: Timeframe = attrs.field(default=Timeframe.M1, converter=_timeframe)
    session: Session = attrs.field(default=Session.REGULAR, converter=_session)
    feed: str = "default"
    settings: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict)


def _job_id(value: Any) -> IngestionJobId:
    return value if isinstance(value, IngestionJobId) else IngestionJobId(value)


@attrs.define
class IngestionJob:
    """A request to ingest ``symbols`` over ``time_range``, and its progress.

    Built positionally, as the design writes it (``IngestionJob(job_id, configuration, symbols,
    time_range)``), or by keyword. Every transition records its domain event on the job
    (``domain_events``); whoever runs the job publishes them, in order, and clears them
    (``pull_domain_events``). The job is the one source of its events.
    """

    job_id: IngestionJobId = attrs.field(converter=_job_id)
    configuration: IngestionConfiguration
    symbols: tuple[Symbol, ...] = attrs.field(converter=symbols_of)
    time_range: TimeRange
    state: ProcessingState = attrs.field(default=ProcessingState.PENDING, kw_only=True)
    created_at: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.UTC), kw_only=True)
    started_at: dt.datetime | None = attrs.field(default=None, kw_only=True)
    completed_at: dt.datetime | None = attrs.field(default=None, kw_only=True)
    error_message: str | None = attrs.field(default=None, kw_only=True)
    bars_processed: int = attrs.field(default=0, kw_only=True)
    partitions_processed: int = attrs.field(default=0, kw_only=True)
    #: Symbols that start later than ``time_range.start`` (``mp update`` fetches each symbol
    #: from its first stored day).
    symbol_starts: Mapping[str, dt.date] = attrs.field(factory=dict, kw_only=True)
    #: Symbols that end earlier than ``time_range.end`` (a name that was renamed away).
    symbol_ends: Mapping[str, dt.date] = attrs.field(factory=dict, kw_only=True)
    #: Fetch every partition asked, also those the dataset already holds complete.
    refresh: bool = attrs.field(default=False, kw_only=True)
    #: Leave alone the partitions ``mp delete`` removed (``mp update``); an explicit ingest
    #: fetches them and forgets they were deleted.
    keep_deleted: bool = attrs.field(default=False, kw_only=True)
    _events: list[DomainEvent] = attrs.field(factory=list, init=False, repr=False, eq=False)

    # -- events ---------------------------------------------------------------------------------

    @property
    def domain_events(self) -> tuple[DomainEvent, ...]:
        """Events recorded since they were last published, oldest first."""
        return tuple(self._events)

    def pull_domain_events(self) -> list[DomainEvent]:
        """The recorded events, oldest first; the job forgets them (they are being published)."""
        events, self._events = self._events, []
        return events

    def clear_domain_events(self) -> None:
        self._events.clear()

    def _record(self, event: DomainEvent) -> None:
        self._events.append(event)

    # -- transitions ----------------------------------------------------------------------------

    def _guard(self, action: str) -> None:
        if self.state not in _ALLOWED[action]:
            raise InvalidStateTransition(
                f"cannot {action.replace('_', ' ')} job {self.job_id} in state {self.state.value}"
            )

    def start(self) -> None:
        """PENDING (or a failed or cancelled run) to IN_PROGRESS; records ``IngestionJobStarted``
        (with the symbol and day of a composite job id)."""
        self._guard("start")
        self._begin()

    def resume(self) -> None:
        """Start again after a failure, a cancellation or a crash; committed work is kept."""
        self._guard("resume")
        self._begin()

    def _begin(self) -> None:
        self.state = ProcessingState.IN_PROGRESS
        self.started_at = dt.datetime.now(dt.UTC)
        self.completed_at = None
        self.error_message = None
        self._record(
            IngestionJobStarted(
                job_id=self.job_id, symbol=self.job_id.symbol, trading_date=self.job_id.day
            )
        )

    def symbol_span(self, symbol: Symbol) -> tuple[dt.date, dt.date]:
        """The first and last day the job asks of ``symbol``."""
        return (
            max(self.time_range.start, self.symbol_starts.get(symbol.value, dt.date.min)),
            min(self.time_range.end, self.symbol_ends.get(symbol.value, dt.date.max)),
        )

    def plan(
        self, partitions_total: int, partitions_pending: int, units: int, partitions_stored: int = 0
    ) -> None:
        """Records ``IngestionJobPlanned``: what the run will do."""
        self._record(
            IngestionJobPlanned(
                job_id=self.job_id,
                partitions_total=partitions_total,
                partitions_pending=partitions_pending,
                units=units,
                partitions_stored=partitions_stored,
            )
        )

    def begin_unit(self, symbols: tuple[Symbol, ...], days: tuple[dt.date, ...]) -> None:
        """Records ``IngestionUnitStarted``, then ``IngestionJobStarted`` for each partition."""
        self._record(
            IngestionUnitStarted(
                job_id=self.job_id,
                symbols=tuple(s.value for s in symbols),
                first_day=min(days),
                last_day=max(days),
                partitions=len(symbols) * len(days),
            )
        )
        # One moment for the unit's partitions (a whole market's unit starts hundreds).
        now = dt.datetime.now(dt.UTC)
        job_id = self.job_id
        self._events.extend(
            IngestionJobStarted(occurred_at=now, job_id=job_id, symbol=symbol, trading_date=day)
            for symbol in symbols
            for day in days
        )

    def begin_partition(self, symbol: Symbol, trading_date: dt.date) -> None:
        """Records ``IngestionJobStarted`` for one partition: work on it began."""
        self._record(
            IngestionJobStarted(job_id=self.job_id, symbol=symbol, trading_date=trading_date)
        )

    def mark_symbol_processed(
        self,
        symbol: Symbol,
        bars_count: int,
        partition: IngestionPartition,
        rejected_count: int = 0,
    ) -> None:
        """A partition is committed: counts it and records ``IngestionBatchProcessed``."""
        self._guard("mark_symbol_processed")
        if partition.symbol != symbol:
            raise ValueError(f"partition {partition} is not for symbol {symbol}")
        self.bars_processed += bars_count
        self.partitions_processed += 1
        self._record(
            IngestionBatchProcessed(
                job_id=self.job_id,
                symbol=symbol,
                bars_count=bars_count,
                partition=partition,
                rejected_count=rejected_count,
            )
        )

    def mark_partitions_processed(
        self, processed: Iterable[tuple[IngestionPartition, int]]
    ) -> None:
        """A unit's partitions are committed (each with its rejected rows): counts them and
        records an ``IngestionBatchProcessed`` for each, as :meth:`mark_symbol_processed`
        does one at a time."""
        self._guard("mark_symbol_processed")
        now = dt.datetime.now(dt.UTC)
        job_id = self.job_id
        events = [
            IngestionBatchProcessed(
                occurred_at=now,
                job_id=job_id,
                symbol=partition.symbol,
                bars_count=partition.bars_count,
                partition=partition,
                rejected_count=rejected,
            )
            for partition, rejected in processed
        ]
        # Counted once: each assignment to the job runs its field validators.
        self.bars_processed += sum(e.bars_count for e in events)
        self.partitions_processed += len(events)
        self._events.extend(events)

    def mark_partition_failed(self, symbol: Symbol, trading_date: dt.date, error: str) -> None:
        """Records ``IngestionPartitionFailed``; the job goes on with its other partitions."""
        self._record(
            IngestionPartitionFailed(
                job_id=self.job_id, symbol=symbol, trading_date=trading_date, error_message=error
            )
        )

    def note(self, message: str) -> None:
        """Records ``IngestionProviderNote``: something the user should know about the source."""
        self._record(IngestionProviderNote(job_id=self.job_id, message=message))

    def complete(
        self,
        *,
        total_bars: int | None = None,
        rejected_rows: int = 0,
        partitions_processed: int | None = None,
    ) -> None:
        """IN_PROGRESS to COMPLETED; records ``IngestionJobCompleted`` (totals default to what
        this job object counted)."""
        self._guard("complete")
        self.state = ProcessingState.COMPLETED
        self.completed_at = dt.datetime.now(dt.UTC)
        self._record(
            IngestionJobCompleted(
                job_id=self.job_id,
                symbols_processed=len(self.symbols),
                partitions_processed=(
                    self.partitions_processed
                    if partitions_processed is None
                    else partitions_processed
                ),
                total_bars=self.bars_processed if total_bars is None else total_bars,
                rejected_rows=rejected_rows,
            )
        )

    def fail(self, reason: str, partitions_failed: int = 0) -> None:
        """To FAILED; records ``IngestionJobFailed``."""
        self._guard("fail")
        self.state = ProcessingState.FAILED
        self.error_message = reason
        self.completed_at = dt.datetime.now(dt.UTC)
        self._record(
            IngestionJobFailed(
                job_id=self.job_id, error_message=reason, partitions_failed=partitions_failed
            )
        )

    def cancel(self, partitions_remaining: int = 0) -> None:
        """To CANCELLED (what was committed stays); records ``IngestionJobCancelled``."""
        self._guard("cancel")
        self.state = ProcessingState.CANCELLED
        self.completed_at = dt.datetime.now(dt.UTC)
        self._record(
            IngestionJobCancelled(job_id=self.job_id, partitions_remaining=partitions_remaining)
        )
