"""What a validator receives and returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import attrs
import pyarrow as pa

from marketpipe.model.calendar import SessionWindow
from marketpipe.model.schema import LOOSE_BAR_SCHEMA, loose, schema_of
from marketpipe.model.values import Timeframe

REJECTED_SCHEMA = LOOSE_BAR_SCHEMA.append(pa.field("reason", pa.string()))


def rejected_schema(timeframe: Timeframe | None) -> pa.Schema:
    """Rejected rows of a series' kind: its columns, nullable, and ``reason``."""
    if timeframe is None or timeframe.is_bar:
        return REJECTED_SCHEMA
    return loose(schema_of(timeframe)).append(pa.field("reason", pa.string()))


@attrs.frozen(kw_only=True)
class ValidationContext:
    """The request a unit's bars must answer: its symbols, session windows and timeframe."""

    symbols: frozenset[str]
    windows: tuple[SessionWindow, ...]
    timeframe: Timeframe
    allow_null_prices: bool = False


@attrs.frozen
class ValidationResult:
    """``valid`` rows go on; ``rejected`` rows (canonical columns plus ``reason``) are quarantined.
    ``counted``: rows kept that are worth knowing of, by what they are (``"crossed quotes
    (bid above ask), kept"``); the job sums them into one note each."""

    valid: pa.Table
    rejected: pa.Table
    counted: Mapping[str, int] = attrs.field(factory=dict)

    @classmethod
    def all_valid(cls, table: pa.Table) -> ValidationResult:
        return cls(table, REJECTED_SCHEMA.empty_table())


class Validator(Protocol):
    def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult: ...
