"""What a validator receives and returns."""

from __future__ import annotations

from typing import Protocol

import attrs
import pyarrow as pa

from marketpipe.model.calendar import SessionWindow
from marketpipe.model.schema import LOOSE_BAR_SCHEMA
from marketpipe.model.values import Timeframe

REJECTED_SCHEMA = LOOSE_BAR_SCHEMA.append(pa.field("reason", pa.string()))


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
    ``notes`` say what was kept but is worth knowing (crossed quotes)."""

    valid: pa.Table
    rejected: pa.Table
    notes: tuple[str, ...] = ()

    @classmethod
    def all_valid(cls, table: pa.Table) -> ValidationResult:
        return cls(table, REJECTED_SCHEMA.empty_table())


class Validator(Protocol):
    def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult: ...
