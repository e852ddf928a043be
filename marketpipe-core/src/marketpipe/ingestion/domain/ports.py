"""The seed's import path of :mod:`marketpipe.plugins.provider`."""

from marketpipe.plugins.provider import (
    IMarketDataProvider,
)

__all__ = [
    "IMarketDataProvider",
]
