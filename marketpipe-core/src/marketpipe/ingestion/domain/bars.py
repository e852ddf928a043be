"""The seed's import path of :mod:`marketpipe.model.bars`."""

from marketpipe.model.bars import (
    OHLCVBar,
)

__all__ = [
    "OHLCVBar",
]
