"""Validators of trades and quotes, columnar, a reason per rejected row (first failure wins).

Trades: symbol requested; timestamp present and inside one of the requested New York days;
price finite and positive; size finite and positive; correction one of the known values;
timestamps non-decreasing within a symbol in the provider's order (the order of the rows); no
trade twice (the same symbol, id and timestamp: a message the provider sent again).
Quotes: the same for the symbol and the timestamp; each side's price finite and positive and its
size positive, or both null (an empty side); at least one side. A crossed quote (bid above ask)
is a fact of the feed, not bad data: it is kept and counted in a note.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.calendar import ny_midnight_ns
from marketpipe.model.schema import filled, null_mask
from marketpipe.model.ticks import CORRECTIONS
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import ValidatorSpec
from marketpipe.plugins.validator import ValidationContext, ValidationResult
from marketpipe.validate.rows import Reasons, out_of_order, requested

TRADE_REASONS = (
    "",
    "symbol not requested",
    "timestamp missing or outside the requested days",
    "price not finite and positive",
    "size not finite and positive",
    "unknown correction",
    "timestamp before the symbol's previous trade",
    "the same trade again (its symbol, id and timestamp seen before): a message sent twice",
)
QUOTE_REASONS = (
    "",
    "symbol not requested",
    "timestamp missing or outside the requested days",
    "bid not a finite positive price with a positive size",
    "ask not a finite positive price with a positive size",
    "no bid and no ask",
    "timestamp before the symbol's previous quote",
)


#: What a crossed quote is counted as (:attr:`ValidationResult.counted`).
CROSSED = "crossed quotes (bid above ask), kept"


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """Floats, a null as NaN."""
    return np.asarray(filled(column.cast(pa.float64()), float("nan")), dtype=np.float64)


def _common(check: Reasons, context: ValidationContext) -> tuple[np.ndarray, np.ndarray]:
    """Symbol and day checks (reasons 1 and 2); the symbol codes and timestamps."""
    table = check.table
    codes, wanted = requested(table["symbol"], context.symbols)
    check.flag(~wanted, 1)
    stamps = table["timestamp"].cast(pa.int64())
    missing = null_mask(stamps)
    ts = np.asarray(filled(stamps, 0), dtype=np.int64)
    inside = np.zeros(len(ts), dtype=bool)
    for day in sorted({w.day for w in context.windows}):
        inside |= (ts >= ny_midnight_ns(day)) & (ts < ny_midnight_ns(day + dt.timedelta(days=1)))
    check.flag(missing | ~inside, 2)
    return codes, ts


def _repeated(
    codes: np.ndarray, ids: pa.ChunkedArray, ts: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """Rows whose (symbol, id, timestamp) an earlier valid row has: a provider's message sent
    twice in a row (a page served again, a packet captured twice); one sent again later is
    out of order already. Only rows that share a stamp with a neighbour of their symbol are
    compared, so this costs a pass over the stamps. A trade's id is unique within its
    symbol's day: a second print with the id at another time (ids restarting after a sequence
    reset) is another trade, kept."""
    out = np.zeros(len(ts), dtype=bool)
    rows = np.flatnonzero(valid)
    if len(rows) < 2:
        return out
    code, stamp = codes[rows], ts[rows]
    same = (code[1:] == code[:-1]) & (stamp[1:] == stamp[:-1])
    if not same.any():
        return out
    tied = np.zeros(len(rows), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    run = np.cumsum(np.r_[True, ~same])[tied]  # which run of one symbol's stamp
    rows = rows[tied]
    id_codes = pc.dictionary_encode(ids.take(pa.array(rows))).combine_chunks()
    key = run * len(id_codes.dictionary) + np.asarray(id_codes.indices.to_numpy(), np.int64)
    _, first = np.unique(key, return_index=True)  # each (run, id)'s first row
    if len(first) < len(rows):
        again = np.ones(len(rows), dtype=bool)
        again[first] = False
        out[rows[again]] = True
    return out


class TradeValidator:
    """Rejects trades a reader would mistake for clean data."""

    def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult:
        check = Reasons(table, TRADE_REASONS)
        codes, ts = _common(check, context)
        price, size = _numbers(table["price"]), _numbers(table["size"])
        with np.errstate(invalid="ignore"):
            check.flag(~(np.isfinite(price) & (price > 0)), 3)
            check.flag(~(np.isfinite(size) & (size > 0)), 4)
        known = pc.is_in(table["correction"], value_set=pa.array(CORRECTIONS, pa.string()))
        check.flag(~np.asarray(known.fill_null(False).to_numpy(zero_copy_only=False)), 5)
        check.flag(out_of_order(codes, ts, check.standing, equal_too=False), 6)
        check.flag(_repeated(codes, table["id"], ts, check.standing), 7)
        return check.result()


class QuoteValidator:
    """Rejects quotes a reader would mistake for clean data; counts the crossed ones kept."""

    def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult:
        check = Reasons(table, QUOTE_REASONS)
        codes, ts = _common(check, context)
        sides = {}
        for reason, side in ((3, "bid"), (4, "ask")):
            price, size = _numbers(table[f"{side}_price"]), _numbers(table[f"{side}_size"])
            empty = np.isnan(price) & np.isnan(size)
            with np.errstate(invalid="ignore"):
                good = np.isfinite(price) & (price > 0) & np.isfinite(size) & (size > 0)
            check.flag(~(good | empty), reason)
            sides[side] = (price, empty)
        check.flag(sides["bid"][1] & sides["ask"][1], 5)
        check.flag(out_of_order(codes, ts, check.standing, equal_too=False), 6)
        with np.errstate(invalid="ignore"):
            crossed = int(np.count_nonzero(check.standing & (sides["bid"][0] > sides["ask"][0])))
        return check.result({CROSSED: crossed} if crossed else {})


@hookimpl
def marketpipe_validators() -> list[ValidatorSpec]:
    return [
        ValidatorSpec(
            name="trades",
            factory=TradeValidator,
            description="trades: requested symbol and day, positive finite price and size, "
            "known correction, time order",
            kinds=("trades",),
        ),
        ValidatorSpec(
            name="quotes",
            factory=QuoteValidator,
            description="quotes: requested symbol and day, each side a positive price and size "
            "or empty, time order; crossed quotes kept and counted",
            kinds=("quotes",),
        ),
    ]
