"""The seed's import path of :mod:`marketpipe.fetch.client` (and its paginated client)."""

from marketpipe.fetch.client import (
    Decoder,
    HttpClient,
    T,
    error_message,
    log,
)
from marketpipe.fetch.paginated import BaseApiClient

__all__ = [
    "BaseApiClient",
    "Decoder",
    "HttpClient",
    "T",
    "error_message",
    "log",
]
