"""The seed's import path of :mod:`marketpipe.model.request`."""

from marketpipe.model.request import (
    FetchRequest,
)

__all__ = [
    "FetchRequest",
]
