"""Commands accepted by the application services."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from marketpipe.jobs.job import IngestionConfiguration
from marketpipe.model.values import IngestionJobId, Symbol, TimeRange


def _symbols(value: object) -> tuple[Symbol, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    # A symbol already made is kept (a whole market's 10,000 were made again, 5 ms).
    return tuple(dict.fromkeys(v if type(v) is Symbol else Symbol(v) for v in items))


@attrs.frozen
class CreateIngestionJobCommand:
    symbols: tuple[Symbol, ...] = attrs.field(converter=_symbols)
    time_range: TimeRange
    configuration: IngestionConfiguration
    #: Symbols that start later than ``time_range.start`` (``mp update``).
    symbol_starts: Mapping[str, dt.date] = attrs.field(factory=dict)
    #: Symbols that end earlier than ``time_range.end`` (renamed away).
    symbol_ends: Mapping[str, dt.date] = attrs.field(factory=dict)
    #: Fetch also what the dataset already holds complete.
    refresh: bool = False
    #: Leave alone what ``mp delete`` removed (``mp update``).
    keep_deleted: bool = False


@attrs.frozen
class StartJobCommand:
    job_id: IngestionJobId
