"""When to retry, how long to wait: capped exponential backoff with full jitter, and the
server's own word (``Retry-After`` in seconds or as an HTTP date, ``X-RateLimit-Reset``)."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NEVER_RETRY = frozenset({400, 401, 403, 404, 422})


def should_retry(status: int, body: bytes = b"") -> bool:
    """Retry rate limits and server errors; never a client error, which would only repeat."""
    if status in NEVER_RETRY:
        return False
    return status in RETRY_STATUSES


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Full jitter: uniform in ``[0, min(cap, base * 2**attempt)]`` (attempt counts from 0)."""
    return random.uniform(0.0, min(cap, base * 2.0**attempt))


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, if it said: ``Retry-After`` (seconds or HTTP date),
    else ``X-RateLimit-Reset`` (unix seconds) when ``X-RateLimit-Remaining`` is 0 or absent."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                moment = None
            if moment is not None:
                return max(0.0, moment.timestamp() - now)
    reset = headers.get("x-ratelimit-reset")
    remaining = headers.get("x-ratelimit-remaining")
    if reset and (remaining is None or remaining.strip() == "0"):
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None
