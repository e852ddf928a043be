"""The seed's import path of :mod:`marketpipe.jobs.job`."""

from marketpipe.jobs.job import (
    IngestionConfiguration,
    IngestionJob,
    ProcessingState,
)

__all__ = [
    "IngestionConfiguration",
    "IngestionJob",
    "ProcessingState",
]
