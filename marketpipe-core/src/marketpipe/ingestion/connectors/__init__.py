"""Toolkit for HTTP providers: client, configuration, auth, rate limiting, retries, errors.

``AlpacaClient`` lives in the ``marketpipe-alpaca`` distribution; importing it from here works when
that is installed.
"""

from __future__ import annotations

from typing import Any

from marketpipe.ingestion.connectors.base_client import BaseApiClient
from marketpipe.ingestion.connectors.config import ClientConfig, HeaderTokenAuth
from marketpipe.ingestion.connectors.errors import (
    AuthenticationError,
    ConnectorError,
    EntitlementError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    ResponseTooLargeError,
)
from marketpipe.ingestion.connectors.rate_limiter import RateLimiter
from marketpipe.ingestion.connectors.retry import backoff, retry_after, should_retry
from marketpipe.ingestion.connectors.shape import require_json_object

__all__ = [
    "AlpacaClient",
    "AuthenticationError",
    "BaseApiClient",
    "ClientConfig",
    "ConnectorError",
    "EntitlementError",
    "HeaderTokenAuth",
    "InvalidRequestError",
    "MalformedResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RateLimiter",
    "ResponseTooLargeError",
    "backoff",
    "require_json_object",
    "retry_after",
    "should_retry",
]


def __getattr__(name: str) -> Any:
    if name == "AlpacaClient":
        try:
            from marketpipe_alpaca.client import AlpacaClient
        except ImportError as exc:
            raise ImportError(
                "AlpacaClient is in the marketpipe-alpaca distribution: pip install marketpipe-alpaca"
            ) from exc
        return AlpacaClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
