"""How MarketPipe writes, orders and reads its Parquet files: zstd by default, row groups of 16k
rows on a local disk and 128k in an object store, the symbol dictionary-encoded; a unit's rows
put in order by moving runs; a symbol's rows read from the row groups that can hold it."""

from __future__ import annotations

import bisect
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.model.schema import BAR_SCHEMA, symbol_codes

BAR_NAMES = BAR_SCHEMA.names


def is_sorted(table: pa.Table) -> bool:
    """Rows ordered by (symbol, timestamp): checked in Arrow, far cheaper than sorting anyway.
    A dictionary-encoded symbol column (a unit's, :func:`marketpipe.model.schema.encode_symbols`)
    whose dictionary is in order is compared by its codes: integers rather than text, a fifth
    of the check on a whole market's units."""
    if table.num_rows < 2:
        return True
    sym, ts = table["symbol"], table["timestamp"]
    if pa.types.is_dictionary(sym.type):
        sym = _in_order_codes(symbol_codes(sym))
    before, after = sym.slice(0, len(sym) - 1), sym.slice(1)
    same = pc.equal(before, after)
    ordered = pc.or_(
        pc.less(before, after),
        # Equal stamps are in order: ticks share them, and keep the provider's order.
        pc.and_(same, pc.less_equal(ts.slice(0, len(ts) - 1), ts.slice(1))),
    )
    return bool(pc.all(ordered).as_py())


def _in_order_codes(encoded: pa.DictionaryArray) -> pa.Array:
    """The codes of ``encoded`` when its dictionary is in strictly increasing order (then they
    order as the symbols do), else the symbols themselves."""
    values = encoded.dictionary
    n = len(values)
    if n < 2 or pc.all(pc.less(values.slice(0, n - 1), values.slice(1))).as_py():
        return encoded.indices
    return encoded.dictionary_decode()


#: Runs a table is put together from by :func:`sort_rows` before it takes its rows one by one.
MOST_RUNS = 4096


def sort_rows(table: pa.Table) -> pa.Table:
    """``table`` ordered by (symbol, timestamp), rows of equal keys in their order (the stable
    sort), by moving runs rather than rows where it can.

    A unit's rows come as runs already in order: a provider's days one after another, each
    sorted by symbol (a flat file, IEX's tick cache), or files read in turn. The runs are put in
    order and concatenated (slices, no copy) when that makes the stable sort's order: a
    symbol's runs may touch, not overlap, and where they touch the earlier row comes first. Any
    other table is sorted row by row. Taking every row of a million trades cost 0.2 s (their
    strings and condition lists), as much again as sorting them (bench_ticks.py)."""
    n = table.num_rows
    if is_sorted(table):
        return table
    codes = pc.dictionary_encode(table["symbol"]).combine_chunks()
    rank = np.argsort(np.argsort(codes.dictionary.to_numpy(zero_copy_only=False), kind="stable"))
    sym = rank[codes.indices.to_numpy()]
    ts = np.asarray(pc.cast(table["timestamp"], pa.int64()).to_numpy(), dtype=np.int64)
    starts = np.flatnonzero((sym[1:] != sym[:-1]) | (ts[1:] < ts[:-1])) + 1
    if len(starts) < MOST_RUNS:
        starts = np.concatenate(([0], starts))
        ends = np.append(starts[1:], n)
        order = np.lexsort((starts, ts[starts], sym[starts]))
        first, last = starts[order], ends[order] - 1
        same = sym[first[1:]] == sym[first[:-1]]
        gap = ts[first[1:]] - ts[last[:-1]]
        if np.all(~same | (gap > 0) | ((gap == 0) & (first[1:] > first[:-1]))):
            joined = np.flatnonzero(first[1:] != last[:-1] + 1) + 1  # runs apart in ``table``
            a, b = first[np.concatenate(([0], joined))], last[np.append(joined - 1, len(first) - 1)]
            return pa.concat_tables(
                [table.slice(int(x), int(y - x + 1)) for x, y in zip(a, b, strict=True)]
            )
    return table.take(pa.array(np.lexsort((ts, sym)), pa.int64()))


COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "brotli", "none")
ROW_GROUP_ROWS = 16 * 1024
OBJECT_ROW_GROUP_ROWS = 128 * 1024
WRITE_BUFFER = 4 * 1024 * 1024


def row_group_rows(store: object) -> int:
    """Row groups for files in ``store``: 16k rows on a local disk, where a reader of a few
    symbols skips the others' groups cheaply; 128k in an object store, where each column
    chunk is a ranged request and fewer, larger groups cost fewer round trips."""
    from marketpipe.storage.stores import LocalStore

    return ROW_GROUP_ROWS if isinstance(store, LocalStore) else OBJECT_ROW_GROUP_ROWS


#: The columns whose statistics a tick file keeps: those readers pick row groups by (symbol and
#: time). Statistics of every column (ids, conditions, exchanges as text) took a fifth of the
#: time encoding a trade took (0.16 us against 0.13, bench_ticks' trades), and no reader uses
#: them. Bars keep all theirs.
TICK_STATISTICS = ["symbol", "timestamp"]


def delta_encoded(schema: pa.Schema, ticks: bool) -> dict[str, str]:
    """The columns of bars written ``DELTA_BINARY_PACKED``: the integer counts (``volume``,
    ``trade_count``). zstd worked hardest on them: a unit of minute bars encodes 10% to 15%
    faster and 1% smaller (bench_flatfiles' units, 1.3M rows), a whole-market month of day bars
    4% smaller, and pyarrow and DuckDB read them as fast. Stamps stay plain: zstd finds a
    month file's dates repeated symbol after symbol (3.6 KB for 210,000 day bars; 26 KB
    delta-encoded), and ticks stay plain throughout (IEX's sample day took 8.4 bytes a trade
    with its stamps delta-encoded, 8.1 plain). Every Parquet reader reads it (DuckDB, polars,
    pyarrow, Spark)."""
    if ticks:
        return {}
    return {
        field.name: "DELTA_BINARY_PACKED" for field in schema if pa.types.is_integer(field.type)
    }


def write_bars(
    table: pa.Table, compression: str = "zstd", rows_per_group: int = ROW_GROUP_ROWS
) -> Callable[[BinaryIO], None]:
    """A writer of ``table``; its schema metadata (the footer) becomes the file's key-value
    metadata, once: ``pq.write_table`` also embeds it in the serialized Arrow schema
    (``ARROW:schema``, base64), which for a whole-market month of day bars made a 9 MB footer
    that took pyarrow 12.6 ms to open (1.1 ms without the copy). Readers get it from
    :func:`file_metadata`."""
    metadata = table.schema.metadata
    plain = table.replace_schema_metadata(None)
    kind = (metadata or {}).get(b"marketpipe.kind")
    ticks = kind in (b"trades", b"quotes")
    statistics: bool | list[str] = TICK_STATISTICS if ticks else True

    def write(fh: BinaryIO) -> None:
        # Dictionary-encode only the symbol: price columns rarely repeat enough to pay for it,
        # and skipping them makes writing about 30% faster for the same file size. Counts are
        # delta-encoded (:func:`delta_encoded`). Row groups
        # of 16k rows (about two symbol-months of minute bars; rows are sorted by symbol) let
        # a reader of a few symbols skip the others on their statistics: one symbol's year
        # from a 100-symbol dataset reads 3.6x faster than with 128k-row groups, for files
        # about 4% larger (bench/bench_read.py).
        # Through a buffer of Arrow's own: written straight to ``fh`` (a Python file), every
        # page took the GIL back, and the writers of two units in flight waited on each other
        # and on the reader (py-spy, bench_flatfiles); buffered, it takes it once per 4 MB.
        target = _Unclosed(fh)
        sink = pa.output_stream(target, buffer_size=WRITE_BUFFER)
        try:
            with pq.ParquetWriter(
                sink,
                plain.schema,
                compression=compression,
                use_dictionary=["symbol"],
                column_encoding=delta_encoded(plain.schema, ticks),
                write_statistics=statistics,
            ) as writer:
                writer.write_table(plain, row_group_size=rows_per_group)
                if metadata:
                    writer.add_key_value_metadata(metadata)
            sink.flush()  # not closed: ``fh`` belongs to the caller
        except BaseException:
            target.failed = True
            raise

    return write


def encoded(write: Callable[[BinaryIO], None]) -> Callable[[BinaryIO], None]:
    """``write`` run now, into memory; the writer returned copies its bytes (a unit's file:
    about 1.5 MB for 100,000 minute bars)."""
    buffer = io.BytesIO()
    write(buffer)
    body = buffer.getbuffer()

    def copy(fh: BinaryIO) -> None:
        fh.write(body)

    return copy


class _Unclosed:
    """``fh`` to an Arrow stream that, once dropped, closes what it wraps: ``fh`` stays open
    for its owner (:func:`marketpipe.model.files.prepare_atomic` fsyncs it). After a failed
    write (a full disk) it takes nothing more: the stream, dropped later, would flush what it
    still holds into a file its owner has closed and print that to stderr."""

    closed = False

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.failed = False

    def write(self, data: Any) -> int:
        if self.failed:
            return len(data)
        return self._fh.write(data)

    def flush(self) -> None:
        if not self.failed:
            self._fh.flush()

    def close(self) -> None:
        pass


def read_file(
    source: Any,
    *,
    columns: list[str] | None = None,
    filters: pc.Expression | None = None,
    symbols: list[str] | None = None,
) -> pa.Table:
    """The rows of a store's file that ``filters`` keeps (``symbols``, sorted, names the
    symbols it can keep: row groups holding none are not read).

    Arrow's own files (a local store's) go through ``pq.read_table``. A Python file object (an
    object store's reader) does not: the dataset scanner behind it, pre-buffering on Arrow's
    I/O threads from such an object, left the interpreter to abort at exit ("terminate called
    without an active exception") in about one run in two with pyarrow 26 (reproduced with a
    ``BytesIO``; ``tests/test_parquet_files.py``), which CI saw once in ``mp verify``. Such a
    file is read as a ``ParquetFile``, whose pre-buffering (two requests a row group instead
    of one a column chunk) does not, its groups chosen on their symbol statistics."""
    if isinstance(source, str | os.PathLike | pa.NativeFile):
        return pq.read_table(source, columns=columns, filters=filters)
    file = pq.ParquetFile(source, pre_buffer=True)
    meta = file.metadata
    groups = list(range(meta.num_row_groups))
    if symbols is not None and "symbol" in meta.schema.names:
        groups = _groups_holding(meta, meta.schema.names.index("symbol"), symbols)
    if groups:
        table = file.read_row_groups(groups, columns=columns)
    else:
        table = file.schema_arrow.empty_table()
        table = table.select(columns) if columns is not None else table
    return table.filter(filters) if filters is not None else table


def _groups_holding(meta: pq.FileMetaData, column: int, wanted: list[str]) -> list[int]:
    """The row groups whose statistics of ``column`` (the symbol) can hold one of ``wanted``
    (sorted)."""
    groups = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(column).statistics
        if stats is not None and stats.has_min_max:
            first = bisect.bisect_left(wanted, stats.min)
            if first == len(wanted) or wanted[first] > stats.max:
                continue  # none of the symbols falls inside this group
        groups.append(i)
    return groups


def file_metadata(source: Any) -> dict[bytes, bytes]:
    """A bar file's key-value metadata (its footer keys), whether written by
    :func:`write_bars` or, before, with the same keys inside ``ARROW:schema`` too."""
    found = pq.ParquetFile(source).metadata.metadata or {}
    return {k: v for k, v in found.items() if k != b"ARROW:schema"}


_READERS: list[ThreadPoolExecutor] = []


def readers() -> ThreadPoolExecutor:
    """The threads that read local bar files, kept between reads (starting eight threads cost
    a read of 60 files about a tenth of its time): one more than the machine's cores. Reading
    is work for the CPU (inflating and decoding, without the GIL, between steps that hold
    it); eight threads on two cores read a symbol's 60 month files in 93 ms, three in 62 ms
    (the threads took the GIL from each other)."""
    if not _READERS:
        workers = min(8, (os.cpu_count() or 2) + 1)
        _READERS.append(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="marketpipe-read")
        )
    return _READERS[0]


# A forked child (a Dask worker, the sink kit's writers) has none of its parent's threads: it
# starts a pool of its own rather than wait forever on one whose threads are gone.
os.register_at_fork(after_in_child=_READERS.clear)


def _rows_of(table: pa.Table, wanted: list[str]) -> pa.Table:
    """The rows of ``table`` (its symbol column dictionary-encoded) whose symbol is one of
    ``wanted``: a slice when they are one run (a file sorted by symbol, one symbol asked)."""
    value_set = pa.array(wanted, pa.string())
    found, start = [], 0
    for chunk in table["symbol"].chunks:
        codes = pc.index_in(value_set, value_set=chunk.dictionary).drop_null()
        indices = chunk.indices.to_numpy(zero_copy_only=False)
        if len(codes) == 1:
            hits = np.flatnonzero(indices == codes[0].as_py())
        else:
            hits = np.flatnonzero(np.isin(indices, codes.to_numpy(zero_copy_only=False)))
        found.append(hits + start)
        start += len(chunk)
    rows = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return table.slice(int(rows[0]), len(rows))
    return table.take(pa.array(rows, pa.int64()))


def read_symbols(
    path: str, wanted: list[str], lo: pa.Scalar, hi: pa.Scalar, schema: pa.Schema = BAR_SCHEMA
) -> pa.Table:
    """The rows of ``wanted`` (sorted) stamped in ``[lo, hi)`` from one local bar file, in
    the canonical ``schema`` (bars by default): only the row groups whose symbol statistics can hold one of them are
    decoded.

    Hand-written over ``pyarrow.parquet`` rather than one ``pyarrow.dataset`` over the files:
    the dataset scanner costs about 2.5 ms a file before any row is decoded, which dominated
    a symbol's twenty years read from 240 month files (DuckDB: about 1 ms a file); called
    from a thread pool, this costs about 0.7 ms a file plus the row groups it decodes. A file
    written with other columns (an older layout) is read through the dataset scanner, which
    fills what is missing."""
    # Without pre-buffering: it coalesces reads through the I/O thread pool, which for the one
    # row group a symbol needs cost a quarter of the read (0.5 of 2 ms a file). The symbol
    # column is read as the dictionary it is stored as: its rows are found by comparing codes,
    # and only the rows kept are turned into strings (materializing a row group's 16k names,
    # then matching them, cost 0.4 of the 2 ms).
    file = pq.ParquetFile(path, pre_buffer=False, read_dictionary=["symbol"])
    meta = file.metadata
    names = meta.schema.names
    columns = schema.names
    if sorted(names) != sorted(columns):
        import pyarrow.dataset as ds

        where = (
            pc.field("symbol").isin(wanted)
            & (pc.field("timestamp") >= lo)
            & (pc.field("timestamp") < hi)
        )
        return ds.dataset([path], schema=schema, format="parquet").to_table(filter=where)
    column = names.index("symbol")
    groups = _groups_holding(meta, column, wanted)
    # One thread a file, the files read side by side already (:func:`readers`); a read of
    # many row groups of one file (a liquid symbol's day of trades) decodes its columns side
    # by side too: about 1.2x faster for a million trades on two cores (bench_ticks read).
    table = file.read_row_groups(groups, columns=columns, use_threads=len(groups) >= 8)
    table = _rows_of(table, wanted)
    stamps = table["timestamp"]
    inside = pc.and_(pc.greater_equal(stamps, lo), pc.less(stamps, hi))
    if inside.null_count or not pc.all(inside).as_py():
        table = table.filter(inside)
    field = schema.field("symbol")
    table = table.set_column(column, field, table.column(column).cast(field.type))
    if not table.schema.equals(schema):  # metadata aside; an older file's types
        table = table.cast(schema)
    return table
