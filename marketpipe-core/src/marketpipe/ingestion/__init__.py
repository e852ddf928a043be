"""The seed's import paths: plain re-exports of the stages (``model``, ``jobs``, ``plugins``,
``run``). Nothing in MarketPipe imports from here; new code imports the stages directly."""

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
from marketpipe.jobs.job import IngestionConfiguration, IngestionJob, ProcessingState
from marketpipe.model.bars import OHLCVBar
from marketpipe.model.partition import IngestionPartition
from marketpipe.model.request import FetchRequest
from marketpipe.model.values import IngestionJobId, Session, Symbol, Timeframe, TimeRange
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.run.commands import CreateIngestionJobCommand, StartJobCommand
from marketpipe.run.coordinator import IngestionCoordinatorService
from marketpipe.run.job_service import IngestionJobService
from marketpipe.run.outcome import JobSummary

__all__ = [
    "CreateIngestionJobCommand",
    "DomainEvent",
    "FetchRequest",
    "IMarketDataProvider",
    "IngestionBatchProcessed",
    "IngestionConfiguration",
    "IngestionCoordinatorService",
    "IngestionJob",
    "IngestionJobCancelled",
    "IngestionJobCompleted",
    "IngestionJobFailed",
    "IngestionJobId",
    "IngestionJobPlanned",
    "IngestionJobService",
    "IngestionJobStarted",
    "IngestionPartition",
    "IngestionPartitionFailed",
    "IngestionProviderNote",
    "IngestionUnitStarted",
    "JobSummary",
    "OHLCVBar",
    "ProcessingState",
    "Session",
    "StartJobCommand",
    "Symbol",
    "TimeRange",
    "Timeframe",
]
