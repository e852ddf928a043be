"""Trade and quote files (``trades_v1``, ``quotes_v1``) read as canonical tick batches.

Streamed as the aggregate files are (:mod:`marketpipe_massive.aggs`): pyarrow's CSV reader a
block at a time, the header checked against the columns MarketPipe needs, every value parsed or
the day refused. Massive writes a day's ticks sorted by ticker, so one pass serves every unit of
the day (:mod:`marketpipe_massive.day_stream`).

Trades: ``participant_timestamp`` (the venue's time) is the ``timestamp``, ``sip_timestamp``
beside it; ``size`` is read as a decimal (2026 files carry fractional sizes: kept, never
rounded); ``exchange`` is Massive's integer venue id as text; ``conditions`` its integer codes as
text; ``tape`` 1, 2, 3 is ``A``, ``B``, ``C``; ``sequence_number`` is the ``sequence``. The
``correction`` indicator (the CTA/UTP code Massive passes on) gives the correction: ``0`` (or
empty) regular; ``1`` (an original trade later corrected), ``7``, ``8``, ``10``, ``11`` (cancel
and error records) canceled; ``12`` (a corrected print) corrected; any other code is kept as
``massive:<code>`` and validation quarantines the row with its reason.

Quotes: Massive defines quote sizes in round lots of 100 shares; the ``quote_sizes`` setting
(``lots`` by default) converts them to shares, and a note says so. A side whose price is 0 is an
empty side (null price and size).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.schema import loose
from marketpipe.model.ticks import CANCELED, CORRECTED, QUOTE_SCHEMA, REGULAR, TRADE_SCHEMA

from marketpipe_massive.day_csv import DayCsv

_STAMP = pa.timestamp("ns", tz="UTC")
TRADE_TYPES = {
    "ticker": pa.string(),
    "conditions": pa.string(),
    "correction": pa.string(),
    "exchange": pa.string(),
    "id": pa.string(),
    "participant_timestamp": pa.int64(),
    "price": pa.float64(),
    "sequence_number": pa.int64(),
    "sip_timestamp": pa.int64(),
    "size": pa.float64(),
    "tape": pa.string(),
    "trf_id": pa.string(),
    "trf_timestamp": pa.string(),
}
TRADE_NEEDED = ("ticker", "participant_timestamp", "price", "size", "exchange", "id")
QUOTE_TYPES = {
    "ticker": pa.string(),
    "ask_exchange": pa.string(),
    "ask_price": pa.float64(),
    "ask_size": pa.float64(),
    "bid_exchange": pa.string(),
    "bid_price": pa.float64(),
    "bid_size": pa.float64(),
    "conditions": pa.string(),
    "indicators": pa.string(),
    "participant_timestamp": pa.int64(),
    "sequence_number": pa.int64(),
    "sip_timestamp": pa.int64(),
    "tape": pa.string(),
    "trf_timestamp": pa.string(),
}
QUOTE_NEEDED = ("ticker", "bid_price", "bid_size", "ask_price", "ask_size", "sip_timestamp")
CORRECTIONS = {
    "": REGULAR,
    "0": REGULAR,
    "1": CANCELED,
    "7": CANCELED,
    "8": CANCELED,
    "10": CANCELED,
    "11": CANCELED,
    "12": CORRECTED,
}
TAPES = {"1": "A", "2": "B", "3": "C"}
ROUND_LOT = 100.0
QUOTE_SIZES = ("lots", "shares")


class TickReader:
    """One trades or quotes file's rows as canonical batches, ``kind`` ``trades`` or
    ``quotes``; what was noticed on the way in :attr:`notes`."""

    def __init__(
        self,
        stream: io.RawIOBase,
        label: str,
        kind: str,
        quote_sizes: str = "lots",
        ahead: bool = True,
    ) -> None:
        self.label, self.kind = label, kind
        self.rows = 0
        self._lots = quote_sizes == "lots"
        types, needed = (
            (TRADE_TYPES, TRADE_NEEDED) if kind == "trades" else (QUOTE_TYPES, QUOTE_NEEDED)
        )
        self._schema = loose(TRADE_SCHEMA if kind == "trades" else QUOTE_SCHEMA)
        self._csv = DayCsv(stream, label, types, needed, ahead)
        self.notes = self._csv.notes
        self._names = set(self._csv.names)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._csv:
            self.rows += batch.num_rows
            yield self._trades(batch) if self.kind == "trades" else self._quotes(batch)

    def _column(self, batch: pa.RecordBatch, name: str, kind: pa.DataType) -> pa.Array:
        if name in self._names:
            return batch.column(name)
        return pa.nulls(batch.num_rows, kind)

    def _stamp(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        return pc.cast(self._column(batch, name, pa.int64()), _STAMP)

    def _trades(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        code = self._column(batch, "correction", pa.string())
        keys = pa.array(list(CORRECTIONS))
        known = pc.take(pa.array(list(CORRECTIONS.values())), pc.index_in(code, keys))
        other = pc.binary_join_element_wise(pa.scalar("massive:"), code, "")
        correction = pc.coalesce(known, other, pa.scalar(REGULAR))
        tape = self._column(batch, "tape", pa.string())
        tape = pc.take(pa.array(list(TAPES.values())), pc.index_in(tape, pa.array(list(TAPES))))
        return pa.RecordBatch.from_arrays(
            [
                batch.column("ticker"),
                self._stamp(batch, "participant_timestamp"),
                self._stamp(batch, "sip_timestamp"),
                batch.column("price"),
                batch.column("size"),
                batch.column("exchange"),
                batch.column("id"),
                _codes(self._column(batch, "conditions", pa.string())),
                tape,
                correction,
                self._column(batch, "sequence_number", pa.int64()),
            ],
            schema=self._schema,
        )

    def _quotes(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        scale = ROUND_LOT if self._lots else 1.0
        tape = self._column(batch, "tape", pa.string())
        # The venue's time where the file gives it, else the tape's.
        stamp = pc.coalesce(
            self._stamp(batch, "participant_timestamp"), self._stamp(batch, "sip_timestamp")
        )
        bid_price, bid_size = _side(batch.column("bid_price"), batch.column("bid_size"), scale)
        ask_price, ask_size = _side(batch.column("ask_price"), batch.column("ask_size"), scale)
        return pa.RecordBatch.from_arrays(
            [
                batch.column("ticker"),
                stamp,
                bid_price,
                bid_size,
                ask_price,
                ask_size,
                self._column(batch, "bid_exchange", pa.string()),
                self._column(batch, "ask_exchange", pa.string()),
                _codes(self._column(batch, "conditions", pa.string())),
                pc.take(pa.array(list(TAPES.values())), pc.index_in(tape, pa.array(list(TAPES)))),
                self._column(batch, "sequence_number", pa.int64()),
            ],
            schema=self._schema,
        )


def _codes(text: pa.Array) -> pa.Array:
    """``"12,37"`` as ``["12", "37"]``; an empty field as no code."""
    split = pc.split_pattern(pc.fill_null(text, ""), ",")
    flat = pc.list_flatten(split)
    kept = np.asarray(pc.not_equal(flat, "").to_numpy(zero_copy_only=False), dtype=bool)
    if kept.all():
        return split
    parents = np.asarray(pc.list_parent_indices(split).to_numpy(zero_copy_only=False))
    lengths = np.bincount(parents[kept], minlength=len(split))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pc.filter(flat, pa.array(kept)))


def _side(price: pa.Array, size: pa.Array, scale: float) -> tuple[pa.Array, pa.Array]:
    """One side: no price (0) is an empty side, null price and size; sizes times ``scale``."""
    empty = pc.fill_null(pc.equal(price, 0.0), False)
    none = pa.nulls(len(price), pa.float64())
    return pc.if_else(empty, none, price), pc.if_else(empty, none, pc.multiply(size, scale))
