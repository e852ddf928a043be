"""The seed's import path of :mod:`marketpipe.storage.bar_storage`."""

from marketpipe.storage.bar_storage import (
    ParquetDataStorage,
)

__all__ = [
    "ParquetDataStorage",
]
