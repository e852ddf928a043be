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
)
from marketpipe.model.errors import InvalidInputError

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
    """``bars`` (canonical columns) with each symbol's factors applied to the bars before each
    ex-date: one vectorised pass, a suffix product of the factors a symbol."""
    if not found or bars.num_rows == 0:
        return bars
    by_symbol: dict[str, list[Factor]] = {}
    for factor in found:
        by_symbol.setdefault(factor.symbol, []).append(factor)
    days = session_days(bars["timestamp"])
    symbols = bars["symbol"].to_numpy(zero_copy_only=False)
    price_factor = np.ones(bars.num_rows)
    volume_factor = np.ones(bars.num_rows)
    for symbol, items in by_symbol.items():
        rows = np.flatnonzero(symbols == symbol)
        if not len(rows):
            continue
        items = sorted(items, key=lambda f: f.ex_date)
        ex = np.array([(f.ex_date - _EPOCH).days for f in items], dtype=np.int64)
        # suffix products: a bar before the i-th ex-date takes every factor from i on
        price = np.append(np.cumprod([f.price for f in items][::-1])[::-1], 1.0)
        volume = np.append(np.cumprod([f.volume for f in items][::-1])[::-1], 1.0)
        first_after = np.searchsorted(ex, days[rows], side="right")
        price_factor[rows] = price[first_after]
        volume_factor[rows] = volume[first_after]

    def scaled(name: str) -> pa.Array:
        values = bars[name].to_numpy(zero_copy_only=False).astype(np.float64)
        return pa.array(values * price_factor, pa.float64(), mask=pc.is_null(bars[name]).to_numpy())

    out = bars
    for name in ("open", "high", "low", "close", "vwap"):
        i = out.schema.get_field_index(name)
        out = out.set_column(i, out.schema.field(i), scaled(name))
    volume = bars["volume"].to_numpy(zero_copy_only=False).astype(np.float64)
    i = out.schema.get_field_index("volume")
    out = out.set_column(
        i, out.schema.field(i), pa.array(np.rint(volume * volume_factor).astype(np.int64))
    )
    return out


def closes_before(bars: pa.Table, regular: Callable[[pa.Table], pa.Array]) -> CloseBefore:
    """A :data:`CloseBefore` answered from ``bars`` (raw, canonical): the close of the last
    regular-session bar of the last session before the ex-date that holds any. ``regular``
    says which rows are in the regular session."""
    if bars.num_rows == 0:
        return lambda symbol, ex: None
    kept = bars.filter(regular(bars))
    days = session_days(kept["timestamp"])
    symbols = kept["symbol"].to_numpy(zero_copy_only=False)
    ts = kept["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    close = kept["close"].to_numpy(zero_copy_only=False)
    cache: dict[tuple[str, dt.date], float | None] = {}

    def close_before(symbol: str, ex: dt.date) -> float | None:
        key = (symbol, ex)
        if key not in cache:
            before = np.flatnonzero((symbols == symbol) & (days < (ex - _EPOCH).days))
            if not len(before):
                cache[key] = None
            else:
                last = before[np.argmax(ts[before])]
                value = float(close[last])
                cache[key] = value if math.isfinite(value) else None
        return cache[key]

    return close_before


def describe(found: list[Factor]) -> Mapping[str, list[str]]:
    """What was applied, by symbol (for notes and summaries)."""
    out: dict[str, list[str]] = {}
    for factor in found:
        out.setdefault(factor.symbol, []).append(factor.describe)
    return out
