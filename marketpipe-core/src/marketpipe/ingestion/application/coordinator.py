"""The seed's import path of :mod:`marketpipe.run.coordinator`."""

from marketpipe.run.coordinator import (
    CancelToken,
    IngestionCoordinatorService,
    JobSummary,
    PartitionFailure,
    T,
)

__all__ = [
    "CancelToken",
    "IngestionCoordinatorService",
    "JobSummary",
    "PartitionFailure",
    "T",
]
