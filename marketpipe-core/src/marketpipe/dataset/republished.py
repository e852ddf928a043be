"""Which stored days were built from a source the provider has since replaced.

A provider whose sources can be republished (Massive's flat files: a day's file replaced after
publication, with a new ETag) reports each day's source version
(``IMarketDataProvider.source_versions``); every commit keeps the versions its days were built
from (the files' footers, indexed by the catalog). ``mp update`` asks the provider for the
versions it lists now (a listing, no download) and fetches again, whole, each stored day whose
version changed, saying how many symbols' bars it changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc


def changed_days(
    recorded: Mapping[dt.date, set[str]], current: Mapping[dt.date, str]
) -> tuple[list[dt.date], list[dt.date]]:
    """``(republished, withdrawn)``: stored days whose source now has another version, and
    stored days the provider no longer lists (kept as they are, and named)."""
    republished = sorted(d for d, seen in recorded.items() if d in current and seen != {current[d]})
    withdrawn = sorted(d for d in recorded if d not in current)
    return republished, withdrawn


def symbols_changed(before: pa.Table, after: pa.Table) -> list[str]:
    """The symbols whose rows differ between two reads of the same partitions: a row found in
    one read and not the other (grouped on every column, so no per-symbol loop)."""
    columns = [c for c in before.column_names if c in after.column_names]
    both = pa.concat_tables(
        [
            before.select(columns).append_column(
                "side", pa.array([0] * before.num_rows, pa.int8())
            ),
            after.select(columns).append_column("side", pa.array([1] * after.num_rows, pa.int8())),
        ]
    )
    counted = both.group_by(columns, use_threads=False).aggregate(
        [("side", "min"), ("side", "max")]
    )
    alone = pc.equal(counted["side_min"], counted["side_max"])
    return sorted(pc.unique(counted.filter(alone)["symbol"]).to_pylist())
