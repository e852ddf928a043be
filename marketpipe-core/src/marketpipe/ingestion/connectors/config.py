"""The seed's import path of :mod:`marketpipe.fetch.config`."""

from marketpipe.fetch.config import (
    ClientConfig,
    HeaderTokenAuth,
)

__all__ = [
    "ClientConfig",
    "HeaderTokenAuth",
]
