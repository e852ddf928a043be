"""The seed's import path of the HTTP toolkit (:mod:`marketpipe.fetch`), and of ``AlpacaClient``
when the ``marketpipe-alpaca`` distribution is installed. Providers import :mod:`marketpipe.fetch`,
never this module, so importing ``AlpacaClient`` here makes no cycle."""

from marketpipe.fetch import (
    AuthenticationError,
    BaseApiClient,
    ClientConfig,
    ConnectorError,
    EntitlementError,
    HeaderTokenAuth,
    InvalidRequestError,
    MalformedResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    RateLimiter,
    ResponseTooLargeError,
    backoff,
    require_json_object,
    retry_after,
    should_retry,
)

try:
    from marketpipe_alpaca.client import AlpacaClient
except ImportError:  # marketpipe-alpaca is not installed: using the name says what to install

    class AlpacaClient:  # type: ignore[no-redef]
        """Stands for ``marketpipe_alpaca.client.AlpacaClient``, which is not installed."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise ImportError(
                "AlpacaClient is in the marketpipe-alpaca distribution: "
                "pip install marketpipe-alpaca"
            )


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
