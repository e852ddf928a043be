"""The seed's import path of :mod:`marketpipe.fetch.shape`."""

from marketpipe.fetch.shape import (
    require_json_object,
)

__all__ = [
    "require_json_object",
]
