"""Adjusted bars derived from raw bars and corporate actions, at read time.

The convention of CRSP, zipline and Lean: a bar of a session day before an action's ex-date is
multiplied

- for a split or reverse split, by ``old_rate / new_rate`` in price and ``new_rate / old_rate``
  in volume;
- for a stock dividend, by ``1 / (1 + rate)`` in price and ``1 + rate`` in volume;
- for a cash dividend, by ``1 - rate / C`` in price, where ``C`` is the raw close of the last
  regular session before the ex-date that holds bars (for minute bars, that session's last
  regular minute); volume is unchanged.

Factors of several actions multiply; ``vwap`` moves with prices; ``trade_count`` never changes;
adjusted volume is rounded to whole shares. An action whose factor would be zero, negative or not
finite (a dividend at or above the prior close, a close that is not known) is not applied, and a
note says so: zipline drops such ratios too. Spin-offs, mergers and the other kinds are recorded,
not adjusted for; a read over one gets a note. Renames are not arithmetic: readers resolve them
(:mod:`marketpipe.dataset.read`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.actions import (
    CASH_DIVIDEND,
    DIVIDEND_KINDS,
    FORWARD_SPLIT,
    RECORDED_ONLY,
    REVERSE_SPLIT,
    SPLIT_KINDS,
    STOCK_DIVIDEND,
    plausible_ratio,
)
from marketpipe.model.calendar import ny_midnight_ns
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.schema import symbol_codes

ADJUSTMENTS = ("raw", "split", "dividend", "all")
_EPOCH = dt.date(1970, 1, 1)

#: ``close_before(symbol, ex_date)``: the raw close of the last regular session before
#: ``ex_date`` that holds bars, or ``None``.
CloseBefore = Callable[[str, dt.date], float | None]


@attrs.frozen
class Factor:
    """What one action multiplies the bars before its ex-date by."""

    symbol: str
    ex_date: dt.date
    price: float
    volume: float
    describe: str


def kinds_for(adjustment: str) -> frozenset[str]:
    """The action kinds an adjustment applies; an unknown adjustment is a user error."""
    if adjustment not in ADJUSTMENTS:
        raise InvalidInputError(
            f"unknown adjustment {adjustment!r}: use one of {', '.join(ADJUSTMENTS)}"
        )
    return {
        "raw": frozenset(),
        "split": SPLIT_KINDS,
        "dividend": DIVIDEND_KINDS,
        "all": SPLIT_KINDS | DIVIDEND_KINDS,
    }[adjustment]


def _ratio(value: float) -> str:
    return f"{value:g}"


def factors(
    actions: pa.Table, adjustment: str, close_before: CloseBefore
) -> tuple[list[Factor], list[str]]:
    """The factors ``adjustment`` takes from ``actions`` (in the canonical schema, already
    checked), and notes: actions not applied and why, actions recorded but not adjusted for."""
    kinds = kinds_for(adjustment)
    out: list[Factor] = []
    notes: list[str] = []
    for row in actions.to_pylist():  # a few actions a symbol: a record a row is fine here
        kind, symbol, ex = row["kind"], row["symbol"], row["ex_date"]
        if kind in RECORDED_ONLY and adjustment != "raw":
            notes.append(
                f"{symbol}: {kind.replace('_', ' ')} on {ex or row['process_date']} is recorded, "
                "not adjusted for"
            )
            continue
        if kind not in kinds:
            continue
        price = volume = math.nan
        what = ""
        if kind in (FORWARD_SPLIT, REVERSE_SPLIT):
            old, new = row["old_rate"], row["new_rate"]
            price, volume = old / new, new / old
            what = f"{_ratio(new)}-for-{_ratio(old)} split"
        elif kind == STOCK_DIVIDEND:
            price, volume = 1.0 / (1.0 + row["rate"]), 1.0 + row["rate"]
            what = f"{_ratio(row['rate'])} stock dividend"
        elif kind == CASH_DIVIDEND:
            close = close_before(symbol, ex)
            volume = 1.0
            price = 1.0 - row["rate"] / close if close else math.nan
            what = f"{row['rate']:g} dividend"
        if not (math.isfinite(price) and price > 0 and math.isfinite(volume) and volume > 0):
            notes.append(
                f"{symbol}: {what} ex {ex} not applied: its factor would be "
                + ("unknown (no close before it is stored)" if math.isnan(price) else f"{price:g}")
            )
            continue
        if kind != CASH_DIVIDEND and not plausible_ratio(volume):
            notes.append(f"{symbol}: {what} ex {ex} not applied: an implausible ratio")
            continue
        out.append(Factor(symbol, ex, price, volume, f"{what}, ex {ex}"))
    return out, notes


def session_days(timestamps: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each bar's New York session day, as days since 1970-01-01."""
    local = pc.local_timestamp(timestamps.cast(pa.timestamp("ns", tz="America/New_York")))
    days = pc.cast(local, pa.date32()).cast(pa.int32())
    if isinstance(days, pa.ChunkedArray):
        days = days.combine_chunks()
    return np.asarray(days.to_numpy(zero_copy_only=False), dtype=np.int64)


def apply(bars: pa.Table, found: list[Factor]) -> pa.Table:
    """``bars`` (canonical columns of bars, trades or quotes) with each symbol's factors
    applied to the rows before each ex-date (stamped before the New York midnight opening it): one vectorised pass, a suffix
    product of the factors a symbol."""
    if not found or bars.num_rows == 0:
        return bars
    by_symbol: dict[str, list[Factor]] = {}
    for factor in found:
        by_symbol.setdefault(factor.symbol, []).append(factor)
    ts = _nanos(bars)
    codes, code = _codes(bars)
    price_factor = np.ones(bars.num_rows)
    volume_factor = np.ones(bars.num_rows)
    for symbol, items in by_symbol.items():
        if symbol not in code:
            continue
        rows = np.flatnonzero(codes == code[symbol])
        items = sorted(items, key=lambda f: f.ex_date)
        ex = np.array([ny_midnight_ns(f.ex_date) for f in items], dtype=np.int64)
        # suffix products: a bar before the i-th ex-date takes every factor from i on
        price = np.append(np.cumprod([f.price for f in items][::-1])[::-1], 1.0)
        volume = np.append(np.cumprod([f.volume for f in items][::-1])[::-1], 1.0)
        first_after = np.searchsorted(ex, ts[rows], side="right")
        price_factor[rows] = price[first_after]
        volume_factor[rows] = volume[first_after]
    prices, sizes = pa.array(price_factor), pa.array(volume_factor)
    out = bars
    for name in (n for n in _PRICES if n in bars.column_names):
        i = out.schema.get_field_index(name)
        column = pc.multiply(bars[name].cast(pa.float64()), prices)
        out = out.set_column(i, out.schema.field(i), column)
    for name in (n for n in _SIZES if n in bars.column_names):  # a tick's size: float64
        i = out.schema.get_field_index(name)
        out = out.set_column(i, out.schema.field(i), pc.multiply(bars[name], sizes))
    if "volume" not in bars.column_names:
        return out
    volume = np.rint(bars["volume"].to_numpy(zero_copy_only=False) * volume_factor)
    if len(volume) and not (np.abs(volume) < _INT64_LIMIT).all():
        raise InvalidInputError(
            "the ledger's splits multiply a volume past what an int64 holds: check them with "
            "mp actions, and set the wrong record aside"
        )
    i = out.schema.get_field_index("volume")
    return out.set_column(i, out.schema.field(i), pa.array(volume.astype(np.int64)))


#: The price columns of bars, trades and quotes, multiplied by a factor's price ratio.
_PRICES = ("open", "high", "low", "close", "vwap", "price", "bid_price", "ask_price")
#: The size columns of trades and quotes (float64), multiplied by its volume ratio.
_SIZES = ("size", "bid_size", "ask_size")


#: Volumes at or beyond this do not fit an int64 (2**63); the float product is checked first.
_INT64_LIMIT = float(2**63)


def _nanos(table: pa.Table) -> np.ndarray:
    stamps = table["timestamp"].cast(pa.int64())
    if isinstance(stamps, pa.ChunkedArray):
        stamps = stamps.combine_chunks()
    return np.asarray(stamps.to_numpy(zero_copy_only=False), dtype=np.int64)


def _codes(table: pa.Table) -> tuple[np.ndarray, dict[str, int]]:
    """The symbol column as integer codes, and each symbol's code."""
    encoded = symbol_codes(table["symbol"])
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, {name: i for i, name in enumerate(encoded.dictionary.to_pylist())}


#: Where the close before an ex-date is looked for first (a long weekend and a missing
#: session fit); only when it holds no regular bar is the whole history searched.
LOOKBACK = dt.timedelta(days=10)


def closes_before(bars: pa.Table, regular: Callable[[pa.Table], pa.Array]) -> CloseBefore:
    """A :data:`CloseBefore` answered from ``bars`` (raw, canonical): the close of the last
    regular-session bar of the last session before the ex-date that holds any. ``regular``
    says which rows are in the regular session; it is asked only about the few rows before
    each ex-date, so a read without cash dividends never pays for it."""
    if bars.num_rows == 0:
        return lambda symbol, ex: None
    cache: dict[tuple[str, dt.date], float | None] = {}
    columns: list[tuple[np.ndarray, dict[str, int], np.ndarray]] = []

    def last_regular(rows: np.ndarray) -> float | None:
        if not len(rows):
            return None
        chosen = bars.take(pa.array(rows))
        kept = np.asarray(regular(chosen).to_numpy(zero_copy_only=False), dtype=bool)
        if not kept.any():
            return None
        ts = _nanos(chosen)[kept]
        close = chosen["close"].to_numpy(zero_copy_only=False)[kept]
        value = float(close[np.argmax(ts)])
        return value if math.isfinite(value) else None

    by_symbol: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def rows_of(symbol: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The symbol's rows ordered by time, and their times: found in one pass over the
        table a symbol, not one a dividend."""
        if not columns:
            columns.append((*_codes(bars), _nanos(bars)))
        codes, code, ts = columns[0]
        if symbol not in code:
            return None
        if symbol not in by_symbol:
            rows = np.flatnonzero(codes == code[symbol])
            order = np.argsort(ts[rows], kind="stable")
            by_symbol[symbol] = (rows[order], ts[rows][order])
        return by_symbol[symbol]

    def close_before(symbol: str, ex: dt.date) -> float | None:
        key = (symbol, ex)
        if key in cache:
            return cache[key]
        found = rows_of(symbol)
        if found is None:
            cache[key] = None
            return None
        rows, times = found
        before = int(np.searchsorted(times, ny_midnight_ns(ex), side="left"))
        near = int(np.searchsorted(times, ny_midnight_ns(ex - LOOKBACK), side="left"))
        value = last_regular(rows[near:before])
        if value is None:
            value = last_regular(rows[:before])
        cache[key] = value
        return value

    return close_before


def describe(found: list[Factor]) -> Mapping[str, list[str]]:
    """What was applied, by symbol (for notes and summaries)."""
    out: dict[str, list[str]] = {}
    for factor in found:
        out.setdefault(factor.symbol, []).append(factor.describe)
    return out
