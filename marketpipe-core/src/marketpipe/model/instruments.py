"""Instruments: one canonical Arrow schema for the securities a provider knows (its security
master), listed and delisted, and the check of a batch before it is kept.

``id`` is the provider's stable key for the instrument (a FIGI, an asset id, else the ticker), so
a later record of the same instrument (renamed, delisted) is a new version of it, not another
instrument. ``first_day`` and ``last_day`` are the first and last session days it was listed,
where the provider knows them (null otherwise). ``record`` keeps what the provider sent (JSON).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

INSTRUMENT_SCHEMA = pa.schema(
    [
        pa.field("provider", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("type", pa.string()),
        pa.field("primary_exchange", pa.string()),
        pa.field("active", pa.bool_(), nullable=False),
        pa.field("first_day", pa.date32()),
        pa.field("last_day", pa.date32()),
        pa.field("figi", pa.string()),
        pa.field("cik", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("record", pa.string(), nullable=False),
    ],
    metadata={b"marketpipe.instruments_schema_version": b"1"},
)
INSTRUMENT_COLUMNS = tuple(INSTRUMENT_SCHEMA.names)
_LOOSE = pa.schema([f.with_nullable(True) for f in INSTRUMENT_SCHEMA])
#: What a version is compared on: the same instrument fetched again unchanged is not new.
INSTRUMENT_VALUES = tuple(c for c in INSTRUMENT_COLUMNS if c not in ("fetched_at", "record"))


def instruments_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """A table in :data:`INSTRUMENT_SCHEMA` from one mapping per instrument (missing optional
    fields are null)."""
    rows = [{name: row.get(name) for name in INSTRUMENT_COLUMNS} for row in records]
    return pa.Table.from_pylist(rows, schema=_LOOSE)


def check_instruments(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """``(valid, reasons)``: records without a provider, id, symbol, active flag or fetch time,
    or listed after they were delisted, are left out, each with a reason."""
    table = table.select(list(INSTRUMENT_COLUMNS)).cast(_LOOSE)
    keep, reasons = [], []
    for row in table.select(["provider", "id", "symbol", "active", "first_day", "last_day",
                             "fetched_at", "record"]).to_pylist():  # fmt: skip
        missing = [
            k for k, v in row.items() if k not in ("first_day", "last_day") and v in (None, "")
        ]
        if missing:
            reasons.append(f"{row['symbol'] or row['id']}: a record without {', '.join(missing)}")
            keep.append(False)
        elif row["first_day"] and row["last_day"] and row["first_day"] > row["last_day"]:
            reasons.append(f"{row['symbol']}: listed {row['first_day']}, after its last day "
                           f"{row['last_day']}")  # fmt: skip
            keep.append(False)
        else:
            keep.append(True)
    return table.filter(pa.array(keep, pa.bool_())).cast(INSTRUMENT_SCHEMA), reasons
