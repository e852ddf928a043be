"""The seed's import path of :mod:`marketpipe.model.partition`."""

from marketpipe.model.partition import (
    IngestionPartition,
)

__all__ = [
    "IngestionPartition",
]
