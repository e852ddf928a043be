"""The one canonical, versioned bar schema every provider yields and every file stores, and
the schema of each kind of data (:func:`schema_of`; the tick schemas are in
:mod:`marketpipe.model.ticks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from marketpipe.model.values import Timeframe

SCHEMA_VERSION = "1"

#: Column order and types are part of the contract: providers yield exactly this schema.
BAR_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("trade_count", pa.int64()),
        pa.field("vwap", pa.float64()),
    ],
    metadata={"marketpipe.schema_version": SCHEMA_VERSION},
)

#: The same columns with every field nullable: what rows are held in until validation, so that a
#: bar missing its timestamp or volume is quarantined with a reason instead of failing its batch.
LOOSE_BAR_SCHEMA = pa.schema(
    [field.with_nullable(True) for field in BAR_SCHEMA], metadata=BAR_SCHEMA.metadata
)

BAR_COLUMNS = tuple(BAR_SCHEMA.names)
PRICE_COLUMNS = ("open", "high", "low", "close")


def schema_of(timeframe: Timeframe | None) -> pa.Schema:
    """The canonical schema of a series' rows: bars of any length, trades or quotes."""
    from marketpipe.model.ticks import QUOTE_SCHEMA, TRADE_SCHEMA

    value = timeframe.value if timeframe is not None else "1m"
    return {"trades": TRADE_SCHEMA, "quotes": QUOTE_SCHEMA}.get(value, BAR_SCHEMA)


def loose(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field nullable: rows held until validation (see
    :data:`LOOSE_BAR_SCHEMA`)."""
    if schema is BAR_SCHEMA:
        return LOOSE_BAR_SCHEMA
    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)


def empty_bars() -> pa.Table:
    """An empty table in the canonical schema."""
    return BAR_SCHEMA.empty_table()


def assemble_bars(batches: list[pa.RecordBatch], timeframe: Timeframe | None = None) -> pa.Table:
    """A provider's batches for one unit as one table in the canonical schema of the series'
    kind (``timeframe``; bars by default), nulls allowed (the validators reject the rows that
    must not have them)."""
    schema = schema_of(timeframe)
    if not batches:
        return loose(schema).empty_table()
    first = batches[0].schema
    if all(b.schema.equals(first) for b in batches):
        table = conform(pa.Table.from_batches(batches), strict=False, schema=schema)
    else:
        table = pa.concat_tables([conform(b, strict=False, schema=schema) for b in batches])
    # One chunk a column: every later step reads columns as numpy, which copies a column of
    # many chunks each time (a flat file's unit came in 10 to 20, one per CSV block) and reads
    # one chunk in place.
    return table.combine_chunks()


def conform(
    data: pa.Table | pa.RecordBatch, strict: bool = True, schema: pa.Schema = BAR_SCHEMA
) -> pa.Table:
    """Return ``data`` as a table in the canonical ``schema`` (bars by default).

    Columns are reordered and safely cast; a missing or extra column is an error, since a provider
    that yields something else has a bug that silent coercion would hide. ``strict=False`` allows
    nulls anywhere (the validator then rejects the rows that must not have them).
    """
    target = schema if strict else loose(schema)
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    names = set(table.column_names)
    missing = [c for c in schema.names if c not in names]
    extra = sorted(names - set(schema.names))
    if missing or extra:
        what = (schema.metadata or {}).get(b"marketpipe.kind", b"bars").decode()
        raise ValueError(
            f"{what} do not match the canonical schema: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}"
        )
    table = table.select(list(schema.names))
    if table.schema.equals(target, check_metadata=False):
        return table.replace_schema_metadata(target.metadata)
    return table.cast(target, safe=True)


def repeat_string(value: str, count: int) -> pa.StringArray:
    """``count`` copies of ``value`` as an Arrow string array, built from buffers (no list)."""
    import numpy as np

    raw = value.encode()
    offsets = np.arange(count + 1, dtype=np.int32) * len(raw)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(raw * count))


def bars_batch(
    symbol: str | pa.Array,
    timestamp_ns: Any,
    open_: Any,
    high: Any,
    low: Any,
    close: Any,
    volume: Any,
    trade_count: Any = None,
    vwap: Any = None,
) -> pa.RecordBatch:
    """A canonical record batch from column arrays (numpy or Arrow); ``symbol`` may be one string.

    ``trade_count`` and ``vwap`` may be ``None`` for providers that lack them.
    """
    n = len(timestamp_ns)
    sym = repeat_string(symbol, n) if isinstance(symbol, str) else symbol
    ts = pa.array(timestamp_ns, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    columns = [
        sym,
        ts,
        pa.array(open_, pa.float64()),
        pa.array(high, pa.float64()),
        pa.array(low, pa.float64()),
        pa.array(close, pa.float64()),
        pa.array(volume, pa.int64()),
        pa.nulls(n, pa.int64()) if trade_count is None else pa.array(trade_count, pa.int64()),
        pa.nulls(n, pa.float64()) if vwap is None else pa.array(vwap, pa.float64()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=BAR_SCHEMA)


def encode_symbols(table: pa.Table) -> pa.Table:
    """``table`` with its symbol column dictionary-encoded, once: a unit's bars are encoded when
    they reach validation, and every later step (validators, the partition index, the sink)
    reads the codes through :func:`symbol_codes` instead of hashing the strings again. Writing
    casts the column back to strings (:func:`conform`), so files keep the canonical schema."""
    i = table.schema.get_field_index("symbol")
    if i < 0 or pa.types.is_dictionary(table.schema.field(i).type):
        return table
    return table.set_column(i, "symbol", pc.dictionary_encode(table.column(i)))


def symbol_codes(column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """The symbol column as one dictionary array: its own codes when it is encoded already
    (:func:`encode_symbols`), else encoded here."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            return pa.DictionaryArray.from_arrays(
                pa.array([], pa.int32()), pa.array([], pa.string())
            )
        return column.combine_chunks()
    return column


def null_mask(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Which rows of ``column`` are null, as a numpy mask; a column with no null (most of a
    unit's) or only nulls is not scanned."""
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    if column.null_count == len(column):
        return np.ones(len(column), dtype=bool)
    return np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)


def filled(column: pa.ChunkedArray | pa.Array, value: Any) -> np.ndarray:
    """``column`` as numpy, a null as ``value``: filled only when it holds a null. Validating
    and indexing a whole market's day asks this of every unit's columns, and filling columns
    without nulls was a third of the bar validator's time (bench_flatfiles)."""
    if column.null_count:
        column = pc.fill_null(column, value)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def flat_lists(table: pa.Table) -> pa.Table:
    """List columns (a trade's ``conditions``) as text joined with spaces: for CSV, which
    holds no lists. Condition codes hold no space."""
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            joined = pc.binary_join(table.column(i).cast(pa.list_(pa.string())), " ")
            table = table.set_column(i, field.name, joined)
    return table
