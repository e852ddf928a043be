"""Alpaca's historical trades and quotes (``/v2/stocks/trades``, ``/v2/stocks/quotes``), decoded
straight into the canonical tick columns (:mod:`marketpipe.model.ticks`).

Like bars, a page is parsed by pyarrow's JSON reader against an explicit schema: no Python object
a trade. Under the same client as bars (its limiter, retries, deadlines and page bounds), one
multi-symbol query a unit's span, pages followed to the last.

Mapping: a trade's ``t`` is its ``timestamp`` (Alpaca gives one time), ``x`` its ``exchange``,
``p`` and ``s`` its price and size, ``c`` its ``conditions``, ``i`` its ``id`` (as text), ``z`` its
``tape``; its update field ``u`` gives ``correction``: ``canceled`` and ``incorrect`` (the trade
did not happen as printed) are ``canceled``, ``corrected`` is ``corrected``, none is
``regular``; any other value is kept as sent, and validation quarantines the row with its
reason. A quote's ``bx``/``bp``/``bs`` and ``ax``/``ap``/``as`` are its sides; its sizes are
shares, or round lots converted to shares (x100) when the ``quote_sizes`` setting says ``lots``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.fetch import MalformedResponseError, require_json_object
from marketpipe.model.schema import loose, repeat_string
from marketpipe.model.ticks import (
    CANCELED,
    CORRECTED,
    QUOTE_SCHEMA,
    REGULAR,
    TRADE_SCHEMA,
)
from marketpipe.model.values import Timeframe

from marketpipe_alpaca.client import AlpacaClient, _nanos, fold_lines, read_page
from marketpipe_alpaca.page_records import read_records

_STAMP = pa.timestamp("ns", tz="UTC")
_TRADE = pa.struct(
    [
        ("t", _STAMP),
        ("x", pa.string()),
        ("p", pa.float64()),
        ("s", pa.float64()),
        ("c", pa.list_(pa.string())),
        ("i", pa.int64()),
        ("z", pa.string()),
        ("u", pa.string()),
    ]
)
_QUOTE = pa.struct(
    [
        ("t", _STAMP),
        ("bx", pa.string()),
        ("bp", pa.float64()),
        ("bs", pa.float64()),
        ("ax", pa.string()),
        ("ap", pa.float64()),
        ("as", pa.float64()),
        ("c", pa.list_(pa.string())),
        ("z", pa.string()),
    ]
)
#: Alpaca's update values, as corrections.
UPDATES = {"canceled": CANCELED, "incorrect": CANCELED, "corrected": CORRECTED}
_UPDATE_KEYS = pa.array(list(UPDATES))
ROUND_LOT = 100.0
QUOTE_SIZES = ("shares", "lots")
#: The most ticks a symbol-day can plausibly hold (the busiest names print 1.5M trades and far
#: more quotes): a chain of pages bringing more for a request is malformed.
MAX_TICKS_A_SYMBOL_DAY = 50_000_000


class AlpacaTickClient(AlpacaClient):
    """Trades or quotes, ``kind`` (:data:`Timeframe.TRADES` or :data:`Timeframe.QUOTES`)."""

    decode_in_thread = False  # page_records: many short numpy calls, each taking the GIL

    def __init__(self, *args: Any, kind: Timeframe, quote_sizes: str = "shares", **kw: Any):
        super().__init__(*args, **kw)
        if kind not in (Timeframe.TRADES, Timeframe.QUOTES):
            raise ValueError(f"not a tick kind: {kind}")
        self.kind = kind
        self.lots = quote_sizes == "lots"
        self._schema = TRADE_SCHEMA if kind is Timeframe.TRADES else QUOTE_SCHEMA
        self._loose = loose(self._schema)

    def endpoint(self, symbol: str | Sequence[str]) -> str:
        return f"/v2/stocks/{self.kind.value}"

    def empty_rows(self) -> pa.Table:
        return self._loose.empty_table()

    def max_bars(
        self,
        symbol: str | Sequence[str],
        start_ts: dt.datetime | int,
        end_ts: dt.datetime | int,
        timeframe: Timeframe = Timeframe.TRADES,
        **options: Any,
    ) -> int:
        days = max(1, -(-(_nanos(end_ts) - _nanos(start_ts)) // 86_400_000_000_000))
        symbols = 1 if isinstance(symbol, str) else len(symbol)
        return MAX_TICKS_A_SYMBOL_DAY * days * symbols

    def build_request_params(
        self,
        symbol: str | Sequence[str],
        start_ts: dt.datetime | int,
        end_ts: dt.datetime | int,
        cursor: str | None = None,
        timeframe: Timeframe = Timeframe.TRADES,
        **options: Any,
    ) -> dict[str, str]:
        symbols = symbol if isinstance(symbol, str) else ",".join(symbol)
        return {"symbols": symbols, **self.paging(start_ts, end_ts, cursor)}

    def parse_response(
        self, raw_json: bytes, symbols: str | Sequence[str] | None = None, **context: Any
    ) -> tuple[pa.Table, str | None]:
        """One page to (canonical ticks, next page token); a symbol missing from the answer, or
        an empty answer (``{"trades": {}}`` or ``null``), is zero rows."""
        require_json_object(raw_json, "alpaca")
        names = [symbols] if isinstance(symbols, str) else list(symbols or [])
        trades = self.kind is Timeframe.TRADES
        item = _TRADE if trades else _QUOTE
        key = self.kind.value
        records = read_records(
            raw_json, key, names, item, trailing=("u",) if trades else (), text=("i",)
        )
        if records is not None:
            symbol = pa.concat_arrays(
                [repeat_string(s, n) for s, n in zip(records.symbols, records.counts, strict=True)]
            )
            return self._columns(symbol, records.rows), records.token
        schema = pa.schema(
            [
                (key, pa.struct([(s, pa.list_(item)) for s in names])),
                ("next_page_token", pa.string()),
            ]
        )
        try:
            page = read_page(fold_lines(raw_json), schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            reason = str(exc).splitlines()[0][:120]
            raise MalformedResponseError(
                f"alpaca sent a {key} page that does not decode ({reason})"
            ) from None
        if page.num_rows != 1:
            raise MalformedResponseError("alpaca sent an unexpected body (not one JSON object)")
        token = page["next_page_token"][0].as_py() or None
        by_symbol = page[key].combine_chunks()
        parts = []
        for i, name in enumerate(names):
            lists = by_symbol.field(i) if len(names) else None
            if lists is None or lists.null_count == len(lists):
                continue
            rows = lists.flatten()
            if len(rows):
                parts.append(self._columns(name, rows))
        if not parts:
            return self.empty_rows(), token
        return pa.concat_tables(parts), token

    def _columns(self, symbol: str | pa.Array, rows: pa.StructArray) -> pa.Table:
        n = len(rows)
        symbols = repeat_string(symbol, n) if isinstance(symbol, str) else symbol
        if self.kind is Timeframe.TRADES:
            update = rows.field("u")
            known = pc.take(pa.array(list(UPDATES.values())), pc.index_in(update, _UPDATE_KEYS))
            # No update: regular; an update Alpaca adds later: kept as sent (and quarantined).
            correction = pc.if_else(pc.is_null(update), REGULAR, pc.coalesce(known, update))
            columns = [
                symbols,
                rows.field("t"),
                pa.nulls(n, _STAMP),
                rows.field("p"),
                rows.field("s"),
                rows.field("x"),
                pc.cast(rows.field("i"), pa.string()),
                rows.field("c"),
                rows.field("z"),
                correction,
                pa.nulls(n, pa.int64()),
            ]
        else:
            scale = ROUND_LOT if self.lots else 1.0
            bid_price, bid_size = _side(rows.field("bp"), rows.field("bs"), scale)
            ask_price, ask_size = _side(rows.field("ap"), rows.field("as"), scale)
            columns = [
                symbols,
                rows.field("t"),
                bid_price,
                bid_size,
                ask_price,
                ask_size,
                rows.field("bx"),
                rows.field("ax"),
                rows.field("c"),
                rows.field("z"),
                pa.nulls(n, pa.int64()),
            ]
        return pa.Table.from_arrays(columns, schema=self._loose)


def _side(price: pa.Array, size: pa.Array, scale: float) -> tuple[pa.Array, pa.Array]:
    """One side of the book: no price and no size (both 0, as Alpaca sends an empty side) is
    an empty side, null; sizes times ``scale`` (round lots to shares)."""
    empty = pc.and_(pc.equal(price, 0.0), pc.equal(size, 0.0))
    none = pa.nulls(len(price), pa.float64())
    return (
        pc.if_else(empty, none, price),
        pc.if_else(empty, none, pc.multiply(size, scale)),
    )
