"""Rejected rows, one CSV per partition (symbol, New York day), with a reason per row."""

from __future__ import annotations

from collections import defaultdict
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from marketpipe.model.schema import flat_lists
from marketpipe.storage.layout import quarantine_rel
from marketpipe.storage.store import Store

_NY = pa.timestamp("ns", tz="America/New_York")


def defuse_formulas(table: pa.Table) -> pa.Table:
    """Text cells that a spreadsheet would run as a formula (they start with ``= + - @``, a tab
    or a carriage return) get a leading ``'``, as OWASP advises for CSV exports: a provider's
    symbol or message must never execute in the user's spreadsheet."""
    for i, field in enumerate(table.schema):
        if not pa.types.is_string(field.type) and not pa.types.is_large_string(field.type):
            continue
        column = table.column(i)
        risky = pc.fill_null(pc.match_substring_regex(column, r"^[=+\-@\t\r]"), False)
        if pc.any(risky).as_py():
            quoted = pc.binary_join_element_wise(pa.scalar("'", field.type), column, "")
            table = table.set_column(i, field, pc.if_else(risky, quoted, column))
    return table


def write_quarantine(store: Store, job_id: str, rejected: pa.Table) -> dict[tuple[str, str], str]:
    """Write ``rejected`` under the job's quarantine folder in the dataset's ``store`` (beside
    the bar files: a folder, or the bucket); return (symbol, day) -> relative path.

    A row with no timestamp goes to day ``unknown``. Files are replaced, so a re-run of the same
    job leaves one file per partition.
    """
    if rejected.num_rows == 0:
        return {}
    days = pc.cast(pc.local_timestamp(rejected["timestamp"].cast(_NY)), pa.date32())
    day_text = pc.fill_null(pc.cast(days, pa.string()), "unknown")
    symbols = pc.fill_null(rejected["symbol"], "")
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    # Rejected rows are few; grouping them in Python costs nothing on the valid data path.
    for i, key in enumerate(zip(symbols.to_pylist(), day_text.to_pylist(), strict=True)):
        groups[key].append(i)
    out: dict[tuple[str, str], str] = {}
    for (symbol, day), indices in groups.items():
        rel = quarantine_rel(job_id, symbol, day)
        part = defuse_formulas(flat_lists(rejected.take(pa.array(indices))))

        def write(fh: BinaryIO, part: pa.Table = part) -> None:
            pacsv.write_csv(part, fh)

        store.write(rel, write)
        out[(symbol, day)] = rel
    return out
