"""The canonical schemas of the ticks beneath the bars: trades and quotes (version 1).

Trades, one row each, in the provider's order within a symbol's day:

- ``symbol``: the ticker, as for bars.
- ``timestamp``: when the trade happened, nanoseconds UTC: the exchange's (participant's) time
  where the provider gives it, else the one time it gives.
- ``sip_timestamp``: when the consolidated tape (or the provider) reported it, where the
  provider gives a second time; null otherwise (IEX's own feed has one time).
- ``price``: dollars a share, float64.
- ``size``: shares, float64. Fractional shares exist (Massive's 2026 files carry decimal sizes);
  float64 holds every whole count up to 2**53 exactly and a fraction to 15 significant digits,
  so nothing is rounded to fit, unlike the bars' integer ``volume``.
- ``exchange``: the venue's code as the provider sends it (Alpaca ``"V"``, IEX ``"IEX"``).
- ``id``: the trade's id, a string, unique for the provider within a symbol's day as the
  provider defines it (IEX: within the day; Massive: within ticker, exchange and TRF).
- ``conditions``: the provider's condition codes (CTA/UTP characters for Alpaca; IEX's sale
  condition flags by name, see ``marketpipe_iex``).
- ``tape``: ``A``, ``B`` or ``C`` where known.
- ``correction``: :data:`REGULAR`, :data:`CANCELED` (a trade break, a cancel, an ``incorrect``
  update: the trade did not happen as printed) or :data:`CORRECTED` (a corrected print).
- ``sequence``: the provider's sequence number, where it gives one.

Quotes, one row each: ``symbol``, ``timestamp``, ``bid_price``, ``bid_size``, ``ask_price``,
``ask_size``, ``bid_exchange``, ``ask_exchange``, ``conditions``, ``tape``, ``sequence``. Sizes
are in shares: a provider that sends round lots converts them and says so in a note.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import pyarrow as pa

TICK_SCHEMA_VERSION = "1"

REGULAR = "regular"
CANCELED = "canceled"
CORRECTED = "corrected"
CORRECTIONS = (REGULAR, CANCELED, CORRECTED)

_STAMP = pa.timestamp("ns", tz="UTC")

TRADE_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("timestamp", _STAMP, nullable=False),
        pa.field("sip_timestamp", _STAMP),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("size", pa.float64(), nullable=False),
        pa.field("exchange", pa.string()),
        pa.field("id", pa.string(), nullable=False),
        pa.field("conditions", pa.list_(pa.string())),
        pa.field("tape", pa.string()),
        pa.field("correction", pa.string(), nullable=False),
        pa.field("sequence", pa.int64()),
    ],
    metadata={b"marketpipe.kind": b"trades", b"marketpipe.schema_version": b"1"},
)

QUOTE_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("timestamp", _STAMP, nullable=False),
        pa.field("bid_price", pa.float64()),
        pa.field("bid_size", pa.float64()),
        pa.field("ask_price", pa.float64()),
        pa.field("ask_size", pa.float64()),
        pa.field("bid_exchange", pa.string()),
        pa.field("ask_exchange", pa.string()),
        pa.field("conditions", pa.list_(pa.string())),
        pa.field("tape", pa.string()),
        pa.field("sequence", pa.int64()),
    ],
    metadata={b"marketpipe.kind": b"quotes", b"marketpipe.schema_version": b"1"},
)


def _codes(value: Iterable[str]) -> frozenset[str]:
    return frozenset(str(v) for v in value)


@attrs.frozen
class TradeRules:
    """Which trades set a bar's prices, by their conditions (a provider's spec declares its
    own; see :mod:`marketpipe.dataset.trade_bars`): a trade with a condition of
    ``never_sets`` (odd lots) never does, one with a condition of ``sets_outside_regular``
    (extended-hours prints) only in a minute outside the regular session."""

    never_sets: frozenset[str] = attrs.field(default=frozenset(), converter=_codes)
    sets_outside_regular: frozenset[str] = attrs.field(default=frozenset(), converter=_codes)
