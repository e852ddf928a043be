"""The seed's import path of :mod:`marketpipe.jobs.events`."""

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

__all__ = [
    "DomainEvent",
    "IngestionBatchProcessed",
    "IngestionJobCancelled",
    "IngestionJobCompleted",
    "IngestionJobFailed",
    "IngestionJobPlanned",
    "IngestionJobStarted",
    "IngestionPartitionFailed",
    "IngestionProviderNote",
    "IngestionUnitStarted",
]
