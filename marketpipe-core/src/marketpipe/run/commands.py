"""Commands accepted by the application services."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from marketpipe.jobs.job import IngestionConfiguration
from marketpipe.model.values import IngestionJobId, Symbol, TimeRange, symbols_of


@attrs.frozen
class CreateIngestionJobCommand:
    symbols: tuple[Symbol, ...] = attrs.field(converter=symbols_of)
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
