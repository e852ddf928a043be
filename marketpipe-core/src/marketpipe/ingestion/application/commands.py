"""Commands accepted by the application services."""

from __future__ import annotations

import attrs

from marketpipe.ingestion.domain.job import IngestionConfiguration
from marketpipe.ingestion.domain.values import IngestionJobId, Symbol, TimeRange


def _symbols(value: object) -> tuple[Symbol, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    return tuple(dict.fromkeys(Symbol(v) for v in items))


@attrs.frozen
class CreateIngestionJobCommand:
    symbols: tuple[Symbol, ...] = attrs.field(converter=_symbols)
    time_range: TimeRange
    configuration: IngestionConfiguration


@attrs.frozen
class StartJobCommand:
    job_id: IngestionJobId
