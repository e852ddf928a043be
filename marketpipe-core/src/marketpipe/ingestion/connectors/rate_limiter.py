"""The seed's import path of :mod:`marketpipe.fetch.rate_limiter`."""

from marketpipe.fetch.rate_limiter import (
    RateLimiter,
    SharedWindow,
    Slot,
    WindowFactory,
    shared_windows,
)

__all__ = [
    "RateLimiter",
    "SharedWindow",
    "Slot",
    "WindowFactory",
    "shared_windows",
]
