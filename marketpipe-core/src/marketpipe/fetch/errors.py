"""Errors of HTTP connectors. Each message says what happened and what to do.

The ones a user fixes (credentials, entitlement, a bad request) are also ``UserError``: the job stops
asking the provider and the CLI shows one line. The others are raised only after retries.
"""

from __future__ import annotations

from marketpipe.model.errors import ProviderError, TemporaryError, UserError


class ConnectorError(ProviderError):
    """A provider's HTTP API did not deliver."""


class AuthenticationError(ConnectorError, UserError):
    """The credentials are missing or wrong (401/403)."""


class EntitlementError(ConnectorError, UserError):
    """The account's plan does not cover what was asked (a feed, a recent range)."""


class InvalidRequestError(ConnectorError, UserError):
    """The provider refused a parameter (400/404/422)."""


class RateLimitedError(ConnectorError, TemporaryError):
    """Still rate limited (429) after every retry."""


class ProviderUnavailableError(ConnectorError, TemporaryError):
    """Server errors, timeouts or dropped connections outlasted the retries."""


class MalformedResponseError(ConnectorError):
    """The body could not be decoded (truncated, not JSON, unexpected shape), even after retries."""


class ResponseTooLargeError(MalformedResponseError):
    """A body passed the client's size cap (``ClientConfig.max_body_bytes``); never retried."""
