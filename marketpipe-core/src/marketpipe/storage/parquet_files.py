"""How MarketPipe writes a bar file: zstd by default, 128k-row groups, the symbol dictionary-encoded."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def is_sorted(table: pa.Table) -> bool:
    """Rows ordered by (symbol, timestamp): checked in Arrow, far cheaper than sorting anyway."""
    if table.num_rows < 2:
        return True
    sym, ts = table["symbol"], table["timestamp"]
    before, after = sym.slice(0, len(sym) - 1), sym.slice(1)
    same = pc.equal(before, after)
    ordered = pc.or_(
        pc.less(before, after), pc.and_(same, pc.less(ts.slice(0, len(ts) - 1), ts.slice(1)))
    )
    return bool(pc.all(ordered).as_py())


COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "brotli", "none")
ROW_GROUP_ROWS = 16 * 1024
OBJECT_ROW_GROUP_ROWS = 128 * 1024


def row_group_rows(store: object) -> int:
    """Row groups for files in ``store``: 16k rows on a local disk, where a reader of a few
    symbols skips the others' groups cheaply; 128k in an object store, where each column
    chunk is a ranged request and fewer, larger groups cost fewer round trips."""
    from marketpipe.storage.stores import LocalStore

    return ROW_GROUP_ROWS if isinstance(store, LocalStore) else OBJECT_ROW_GROUP_ROWS


def write_bars(
    table: pa.Table, compression: str = "zstd", rows_per_group: int = ROW_GROUP_ROWS
) -> Callable[[BinaryIO], None]:
    def write(fh: BinaryIO) -> None:
        # Dictionary-encode only the symbol: price columns rarely repeat enough to pay for it,
        # and skipping them makes writing about 30% faster for the same file size. Row groups
        # of 16k rows (about two symbol-months of minute bars; rows are sorted by symbol) let
        # a reader of a few symbols skip the others on their statistics: one symbol's year
        # from a 100-symbol dataset reads 3.6x faster than with 128k-row groups, for files
        # about 4% larger (bench/bench_read.py).
        pq.write_table(
            table,
            fh,
            compression=compression,
            row_group_size=rows_per_group,
            use_dictionary=["symbol"],
        )

    return write
