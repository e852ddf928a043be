"""TOPS quote updates (``Q``) out of a buffer's messages, as columns: IEX's own best bid and
offer per symbol."""

from __future__ import annotations

import numpy as np

from marketpipe_iex.decode.iextp import Messages, gather, selected

QUOTE = ord("Q")
QUOTE_LENGTH = 42

QUOTE_UPDATE = np.dtype(
    {
        "names": ["type", "flags", "timestamp", "symbol", "bid_size", "bid_price", "ask_price",
                  "ask_size"],
        "formats": ["u1", "u1", "<i8", "<u8", "<u4", "<i8", "<i8", "<u4"],
        "offsets": [0, 1, 2, 10, 18, 22, 30, 38],
        "itemsize": QUOTE_LENGTH,
    }
)  # fmt: skip

#: Flag bits: the symbol is not active (halted, paused); the update is outside regular hours.
FLAG_INACTIVE = 0x80
FLAG_EXTENDED = 0x40


def quote_messages(
    buf: np.ndarray, msgs: Messages, symbols: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """The quote updates (``QUOTE_UPDATE`` records) of one buffer, in stream order, and how
    many ``Q`` messages had another length (not read). ``symbols`` (symbol keys) keeps only
    those symbols' updates."""
    at, wrong = selected(buf, msgs, buf[msgs.offset] == QUOTE, QUOTE_LENGTH, symbols)
    return gather(buf, at, QUOTE_UPDATE), wrong
