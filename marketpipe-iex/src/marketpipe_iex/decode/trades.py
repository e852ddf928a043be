"""Trade reports (``T``) and trade breaks (``B``) out of a buffer's messages, as columns."""

from __future__ import annotations

import attrs
import numpy as np

from marketpipe_iex.decode.iextp import Messages, gather, selected

TRADE = ord("T")
BREAK = ord("B")
#: TOPS 1.6 / DEEP 1.0 trade report; TOPS 1.5 had 4 more (reserved) bytes at the end.
TRADE_LENGTHS = (38, 42)

TRADE_REPORT = np.dtype(
    {
        "names": ["type", "flags", "timestamp", "symbol", "size", "price", "trade_id"],
        "formats": ["u1", "u1", "<i8", "<u8", "<u4", "<i8", "<i8"],
        "offsets": [0, 1, 2, 10, 18, 22, 30],
        "itemsize": 38,
    }
)

FLAG_EXTENDED = 0x40
FLAG_ODD_LOT = 0x20


def symbol_key(symbol: str) -> np.uint64:
    """A symbol as the decoder holds it: its 8 space-padded ASCII bytes read as one integer."""
    raw = symbol.encode("ascii").ljust(8, b" ")
    if len(raw) != 8:
        raise ValueError(f"IEX symbols are at most 8 characters: {symbol!r}")
    return np.uint64(int.from_bytes(raw, "little"))


def symbol_names(keys: np.ndarray) -> np.ndarray:
    """Symbol strings for an array of symbol keys."""
    raw = np.ascontiguousarray(keys, dtype="<u8").view("S8")
    names: np.ndarray = np.char.rstrip(np.char.decode(raw, "ascii"), " ")
    return names


@attrs.define
class TradeBatch:
    """Trade reports and breaks in stream order; ``record`` is a TRADE_REPORT array."""

    record: np.ndarray

    def __len__(self) -> int:
        return len(self.record)

    @property
    def is_break(self) -> np.ndarray:
        mask: np.ndarray = self.record["type"] == BREAK
        return mask


def trade_messages(
    buf: np.ndarray, msgs: Messages, layout: int, symbols: np.ndarray | None
) -> tuple[TradeBatch, int]:
    """Trade reports and breaks of ``layout`` bytes (of ``symbols``, symbol keys, when
    given); also how many had another length."""
    kind = buf[msgs.offset]
    at, wrong = selected(buf, msgs, (kind == TRADE) | (kind == BREAK), layout, symbols)
    return TradeBatch(gather(buf, at, TRADE_REPORT)), wrong
