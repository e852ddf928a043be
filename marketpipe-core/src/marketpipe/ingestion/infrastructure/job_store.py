"""The seed's import path of :mod:`marketpipe.jobs.store`."""

from marketpipe.jobs.store import (
    PartitionOutcome,
    PartitionRecord,
    SqliteJobStore,
)

__all__ = [
    "PartitionOutcome",
    "PartitionRecord",
    "SqliteJobStore",
]
