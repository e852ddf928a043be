"""The seed's import path of :mod:`marketpipe.run.job_service`."""

from marketpipe.run.job_service import (
    IngestionJobService,
)

__all__ = [
    "IngestionJobService",
]
