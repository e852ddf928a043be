"""The seed's import path of :mod:`marketpipe.model.values`."""

from marketpipe.model.values import (
    JOB_ID_RULE,
    RAW,
    SYMBOL_RULE,
    IngestionJobId,
    Series,
    Session,
    Symbol,
    Timeframe,
    TimeRange,
)

__all__ = [
    "JOB_ID_RULE",
    "RAW",
    "SYMBOL_RULE",
    "IngestionJobId",
    "Series",
    "Session",
    "Symbol",
    "TimeRange",
    "Timeframe",
]
