"""The HTTP toolkit every provider builds on: client, configuration, auth, one retry policy,
rate limiter, downloads, typed errors and shape checks."""

from marketpipe.fetch.client import HttpClient, Retry
from marketpipe.fetch.config import ApiKeyAuth, ClientConfig, HeaderTokenAuth
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
from marketpipe.fetch.paginated import BaseApiClient
from marketpipe.fetch.rate_limiter import RateLimiter
from marketpipe.fetch.retry import backoff, retry_after, should_retry
from marketpipe.fetch.shape import require_json_object

__all__ = [
    "ApiKeyAuth",
    "AuthenticationError",
    "BaseApiClient",
    "ClientConfig",
    "ConnectorError",
    "EntitlementError",
    "HeaderTokenAuth",
    "HttpClient",
    "InvalidRequestError",
    "MalformedResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RateLimiter",
    "ResponseTooLargeError",
    "Retry",
    "backoff",
    "require_json_object",
    "retry_after",
    "should_retry",
]
