"""The seed's import path of :mod:`marketpipe.run.coordinator`."""

from marketpipe.run.coordinator import IngestionCoordinatorService, T
from marketpipe.run.outcome import CancelToken, JobSummary, PartitionFailure

__all__ = [
    "CancelToken",
    "IngestionCoordinatorService",
    "JobSummary",
    "PartitionFailure",
    "T",
]
