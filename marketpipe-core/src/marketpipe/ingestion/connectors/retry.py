"""The seed's import path of :mod:`marketpipe.fetch.retry`."""

from marketpipe.fetch.retry import (
    NEVER_RETRY,
    RETRY_STATUSES,
    backoff,
    retry_after,
    should_retry,
)

__all__ = [
    "NEVER_RETRY",
    "RETRY_STATUSES",
    "backoff",
    "retry_after",
    "should_retry",
]
