"""A capture's trade reports and quote updates as canonical trades and quotes
(``marketpipe.model.ticks``).

Each trade report (``T``) is a row: IEX's timestamp, price, size, its trade id (unique within
the day) as ``id``, exchange ``V`` (IEX's code on the consolidated tape, as Alpaca names it),
no tape (TOPS does not say it) and no second time. Its sale condition flags become
``conditions``, by name: ``intermarket_sweep`` (0x80), ``extended_hours`` (0x40), ``odd_lot``
(0x20), ``trade_through_exempt`` (0x10), ``single_price_cross`` (0x08).

A trade break (``B``) is no row: it marks the trade it names ``canceled``, matched as the bars
match it: the latest earlier trade report of the same symbol and trade id (ids restart after a
sequence reset). A break naming no earlier trade is counted in :attr:`TradeTable.unmatched`,
never stored.

A quote update (``Q``) is a row of IEX's own best bid and offer: sizes in shares as IEX sends
them, prices in dollars, both exchanges ``V``; a side with no price (0) has a null price
and size. The zero
quote IEX sends for each symbol before it trades (all four values 0) is no quote: it is left
out and counted in :attr:`QuoteTable.zero`. The flags become ``conditions``: ``inactive``
(0x80, halted or paused) and ``extended_hours`` (0x40).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.ticks import CANCELED, QUOTE_SCHEMA, REGULAR, TRADE_SCHEMA, TradeRules

from marketpipe_iex.decode.quotes import QUOTE_UPDATE
from marketpipe_iex.decode.trades import BREAK, TRADE_REPORT, TradeBatch, symbol_names

PRICE_SCALE = 10_000
EXCHANGE = "V"
FLAGS = (
    (0x80, "intermarket_sweep"),
    (0x40, "extended_hours"),
    (0x20, "odd_lot"),
    (0x10, "trade_through_exempt"),
    (0x08, "single_price_cross"),
)


def _by_flag_byte(names: tuple[tuple[int, str], ...]) -> pa.Array:
    """The conditions of every flag byte, indexed by it (a column of flags takes from it)."""
    return pa.array(
        [[name for bit, name in names if flags & bit] for flags in range(256)],
        pa.list_(pa.string()),
    )


_CONDITIONS = _by_flag_byte(FLAGS)

#: The bars' rules (:mod:`marketpipe_iex.bars`) in the terms of the trades' conditions: an odd
#: lot never sets a price, an extended-hours print only outside the regular session.
IEX_RULES = TradeRules(never_sets={"odd_lot"}, sets_outside_regular={"extended_hours"})


@attrs.frozen
class TradeTable:
    """The trades of some batches, and the breaks that named no trade before them."""

    table: pa.Table
    unmatched: int


def symbol_column(keys: np.ndarray) -> pa.Array:
    """The symbols of IEX's 8-byte keys as strings: each distinct key named once (a chunk holds
    a few hundred symbols among tens of thousands of rows), then taken."""
    encoded = pa.array(np.ascontiguousarray(keys, dtype="<u8")).dictionary_encode()
    names = pa.array(symbol_names(encoded.dictionary.to_numpy()), pa.string())
    return names.take(encoded.indices)


def trade_table(batches: Iterable[TradeBatch]) -> TradeTable:
    """The trades of ``batches`` (in stream order) with the breaks among them applied."""
    records = [b.record for b in batches if len(b)]
    record = np.concatenate(records) if records else np.zeros(0, dtype=TRADE_REPORT)
    is_break = record["type"] == BREAK
    position = np.arange(len(record))
    table = trade_rows(record[~is_break])
    return cancel(table, position[~is_break], record[is_break], position[is_break])


def trade_rows(trades: np.ndarray) -> pa.Table:
    """Trade reports (``TRADE_REPORT`` records, no breaks) as canonical trades, all regular."""
    n = len(trades)
    return pa.table(
        {
            "symbol": symbol_column(trades["symbol"]),
            "timestamp": pa.array(trades["timestamp"], pa.int64()).cast(
                TRADE_SCHEMA.field("timestamp").type
            ),
            "sip_timestamp": pa.nulls(n, TRADE_SCHEMA.field("sip_timestamp").type),
            "price": pa.array(trades["price"] / PRICE_SCALE, pa.float64()),
            "size": pa.array(trades["size"].astype(np.float64), pa.float64()),
            "exchange": pa.array(np.full(n, EXCHANGE), pa.string()),
            "id": pc.cast(pa.array(trades["trade_id"], pa.int64()), pa.string()),
            "conditions": _CONDITIONS.take(pa.array(trades["flags"], pa.uint8())),
            "tape": pa.nulls(n, pa.string()),
            "correction": pa.repeat(pa.scalar(REGULAR), n),
            "sequence": pa.nulls(n, pa.int64()),
        },
        schema=TRADE_SCHEMA,
    )


def cancel(table: pa.Table, at: np.ndarray, breaks: np.ndarray, break_at: np.ndarray) -> TradeTable:
    """``table`` (trade rows at stream positions ``at``) with each break (``TRADE_REPORT``
    records at ``break_at``) marking the latest earlier trade of its symbol and id canceled."""
    if not len(breaks):
        return TradeTable(table, 0)
    # Only the rows whose id some break names are looked at: a day's million symbols and ids
    # turned into numpy strings cost more than the rest of reading them back.
    named = pa.array(sorted({str(int(i)) for i in breaks["trade_id"]}), pa.string())
    rows = np.flatnonzero(pc.is_in(table["id"], value_set=named).to_numpy(zero_copy_only=False))
    picked = table.select(["symbol", "id"]).take(pa.array(rows, pa.int64()))
    symbols = np.asarray(picked["symbol"].to_numpy(zero_copy_only=False), dtype=str)
    ids = np.asarray(pc.cast(picked["id"], pa.int64()).to_numpy(zero_copy_only=False))
    stream = at[rows]
    canceled = np.zeros(table.num_rows, dtype=bool)
    unmatched = 0
    names = symbol_names(breaks["symbol"])
    for name, brk, when in zip(names, breaks, break_at, strict=True):  # a handful a day
        hits = np.flatnonzero((symbols == name) & (ids == brk["trade_id"]) & (stream < when))
        if len(hits):
            canceled[rows[hits[np.argmax(stream[hits])]]] = True  # the latest before it
        else:
            unmatched += 1
    if canceled.any():
        # Over the corrections the rows have: a read applies its span's breaks after the
        # breaks stamped outside it, and must not undo what those canceled.
        correction = pc.if_else(pa.array(canceled), CANCELED, table["correction"])
        i = table.schema.get_field_index("correction")
        table = table.set_column(i, table.schema.field(i), correction)
    return TradeTable(table, unmatched)


QUOTE_FLAGS = ((0x80, "inactive"), (0x40, "extended_hours"))
_QUOTE_CONDITIONS = _by_flag_byte(QUOTE_FLAGS)


@attrs.frozen
class QuoteTable:
    """The quotes of some updates, and how many zero quotes were left out."""

    table: pa.Table
    zero: int


def quote_table(updates: Iterable[np.ndarray]) -> QuoteTable:
    """``QUOTE_UPDATE`` records (in stream order) as canonical quotes."""
    parts = [u for u in updates if len(u)]
    record = np.concatenate(parts) if parts else np.zeros(0, dtype=QUOTE_UPDATE)
    zero = (
        (record["bid_size"] == 0)
        & (record["bid_price"] == 0)
        & (record["ask_price"] == 0)
        & (record["ask_size"] == 0)
    )
    record = record[~zero]
    n = len(record)

    def side(price: str, size: str) -> tuple[pa.Array, pa.Array]:
        none = record[price] == 0  # no bid (or no offer): neither price nor size
        return (
            pa.array(record[price] / PRICE_SCALE, pa.float64(), mask=none),
            pa.array(record[size].astype(np.float64), pa.float64(), mask=none),
        )

    bid_price, bid_size = side("bid_price", "bid_size")
    ask_price, ask_size = side("ask_price", "ask_size")

    venue = pa.array(np.full(n, EXCHANGE), pa.string())
    table = pa.table(
        {
            "symbol": symbol_column(record["symbol"]),
            "timestamp": pa.array(record["timestamp"], pa.int64()).cast(
                QUOTE_SCHEMA.field("timestamp").type
            ),
            "bid_price": bid_price,
            "bid_size": bid_size,
            "ask_price": ask_price,
            "ask_size": ask_size,
            "bid_exchange": venue,
            "ask_exchange": venue,
            "conditions": _QUOTE_CONDITIONS.take(pa.array(record["flags"], pa.uint8())),
            "tape": pa.nulls(n, pa.string()),
            "sequence": pa.nulls(n, pa.int64()),
        },
        schema=QUOTE_SCHEMA,
    )
    return QuoteTable(table, int(np.count_nonzero(zero)))
