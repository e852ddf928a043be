"""The ``IngestionJob`` aggregate, its configuration and its guarded state machine."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from marketpipe.errors import InvalidInputError, InvalidStateTransition
from marketpipe.ingestion.domain.partition import IngestionPartition
from marketpipe.ingestion.domain.values import (
    IngestionJobId,
    Session,
    Symbol,
    Timeframe,
    TimeRange,
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


@attrs.define(kw_only=True)
class IngestionJob:
    """A request to ingest ``symbols`` over ``time_range``, and its progress."""

    job_id: IngestionJobId
    symbols: tuple[Symbol, ...]
    time_range: TimeRange
    configuration: IngestionConfiguration
    state: ProcessingState = ProcessingState.PENDING
    created_at: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.UTC))
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    error_message: str | None = None
    bars_processed: int = 0
    partitions_processed: int = 0

    def _guard(self, action: str) -> None:
        if self.state not in _ALLOWED[action]:
            raise InvalidStateTransition(
                f"cannot {action.replace('_', ' ')} job {self.job_id} in state {self.state.value}"
            )

    def start(self) -> None:
        self._guard("start")
        self.state = ProcessingState.IN_PROGRESS
        self.started_at = dt.datetime.now(dt.UTC)
        self.completed_at = None
        self.error_message = None

    def resume(self) -> None:
        """Start again after a failure, a cancellation or a crash; committed work is kept."""
        self._guard("resume")
        self.state = ProcessingState.IN_PROGRESS
        self.started_at = dt.datetime.now(dt.UTC)
        self.completed_at = None
        self.error_message = None

    def mark_symbol_processed(
        self, symbol: Symbol, bars_count: int, partition: IngestionPartition
    ) -> None:
        self._guard("mark_symbol_processed")
        if partition.symbol != symbol:
            raise ValueError(f"partition {partition} is not for symbol {symbol}")
        self.bars_processed += bars_count
        self.partitions_processed += 1

    def complete(self) -> None:
        self._guard("complete")
        self.state = ProcessingState.COMPLETED
        self.completed_at = dt.datetime.now(dt.UTC)

    def fail(self, reason: str) -> None:
        self._guard("fail")
        self.state = ProcessingState.FAILED
        self.error_message = reason
        self.completed_at = dt.datetime.now(dt.UTC)

    def cancel(self) -> None:
        self._guard("cancel")
        self.state = ProcessingState.CANCELLED
        self.completed_at = dt.datetime.now(dt.UTC)
