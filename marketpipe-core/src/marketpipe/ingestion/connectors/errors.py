"""The seed's import path of :mod:`marketpipe.fetch.errors`."""

from marketpipe.fetch.errors import (
    AuthenticationError,
    ConnectorError,
    EntitlementError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    ResponseTooLargeError,
)

__all__ = [
    "AuthenticationError",
    "ConnectorError",
    "EntitlementError",
    "InvalidRequestError",
    "MalformedResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "ResponseTooLargeError",
]
