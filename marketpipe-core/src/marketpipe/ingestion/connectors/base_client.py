"""The seed's import path of :mod:`marketpipe.fetch.client`."""

from marketpipe.fetch.client import (
    BaseApiClient,
    Decoder,
    HttpClient,
    T,
    error_message,
    log,
)

__all__ = [
    "BaseApiClient",
    "Decoder",
    "HttpClient",
    "T",
    "error_message",
    "log",
]
