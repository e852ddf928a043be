"""Trades to one-minute bars in bounded memory, then to any timeframe and session window.

The consolidated-tape convention (see the package README): every unbroken trade counts toward
volume, trade count and VWAP; odd lots (flag 0x20) never set open, high, low or close;
extended-hours trades (flag 0x40) set them only in minutes outside the regular session. A minute
whose trades set no price is a bar with null prices.

Memory is bounded by the bars, not the trades: each decoded batch is reduced to partial bars
(mergeable: sums, extremes, and the first and last price-setting trade with its stream position),
which are merged as they pile up. Trades also go to a temporary spill file, read back only when a
trade break arrives, to rebuild exactly the bars that held a broken trade.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import attrs
import numpy as np
import pyarrow as pa
from marketpipe.model.calendar import SessionWindow, ny_midnight_ns
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe.model.values import Timeframe

from marketpipe_iex.decode.trades import FLAG_EXTENDED, FLAG_ODD_LOT, TradeBatch, symbol_names

MINUTE = 60_000_000_000
PRICE_SCALE = 10_000
_NONE = np.iinfo(np.int64).max  # "no price-setting trade" in position columns
_LOW_NONE = np.iinfo(np.int64).max
_HIGH_NONE = np.iinfo(np.int64).min

#: Partial bars: one row per (symbol code, minute) of what has been reduced so far.
PARTIAL = np.dtype(
    [
        ("key", "<i8"),
        ("volume", "<i8"),
        ("count", "<i8"),
        ("pv", "<f8"),
        ("high", "<i8"),
        ("low", "<i8"),
        ("open", "<i8"),
        ("open_at", "<i8"),
        ("close", "<i8"),
        ("close_at", "<i8"),
    ]
)
#: What is spilled of each trade, to rebuild a bar after a break.
SPILLED = np.dtype(
    [
        ("trade_id", "<i8"),
        ("key", "<i8"),
        ("price", "<i8"),
        ("size", "<i8"),
        ("sets", "?"),
        ("at", "<i8"),
    ]
)

#: A trade break as kept until the end: the symbol's code, the broken trade's id, its position.
BREAKS = np.dtype([("code", "<i8"), ("trade_id", "<i8"), ("at", "<i8")])


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def _reduce(
    key: np.ndarray, price: np.ndarray, size: np.ndarray, sets: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """Trades (any order) to partial bars."""
    order = np.argsort(key, kind="stable")
    key, price, size, sets, at = key[order], price[order], size[order], sets[order], at[order]
    starts = _starts(key)
    out = np.zeros(len(starts), dtype=PARTIAL)
    if not len(starts):
        return out
    out["key"] = key[starts]
    out["volume"] = np.add.reduceat(size, starts)
    out["count"] = np.diff(np.append(starts, len(key)))
    out["pv"] = np.add.reduceat(price.astype(np.float64) * size, starts)
    out["high"] = np.maximum.reduceat(np.where(sets, price, _HIGH_NONE), starts)
    out["low"] = np.minimum.reduceat(np.where(sets, price, _LOW_NONE), starts)
    pos = np.arange(len(key))
    first = np.minimum.reduceat(np.where(sets, pos, _NONE), starts)
    last = np.maximum.reduceat(np.where(sets, pos, -1), starts)
    has = first != _NONE
    first, last = np.where(has, first, 0), np.where(has, last, 0)
    # a stable sort keeps each key's trades in stream order: first/last by position is by time
    out["open"] = np.where(has, price[first], 0)
    out["close"] = np.where(has, price[last], 0)
    out["open_at"] = np.where(has, at[first], _NONE)
    out["close_at"] = np.where(has, at[last], -1)
    return out


def _merge(parts: np.ndarray) -> np.ndarray:
    """Partial bars with equal keys into one each."""
    if not len(parts):
        return parts
    parts = parts[np.lexsort((parts["open_at"], parts["key"]))]
    starts = _starts(parts["key"])
    out = np.zeros(len(starts), dtype=PARTIAL)
    out["key"] = parts["key"][starts]
    for name in ("volume", "count", "pv"):
        out[name] = np.add.reduceat(parts[name], starts)
    out["high"] = np.maximum.reduceat(parts["high"], starts)
    out["low"] = np.minimum.reduceat(parts["low"], starts)
    out["open"] = parts["open"][starts]  # smallest open_at first ("none" sorts last)
    out["open_at"] = parts["open_at"][starts]
    ends = np.append(starts[1:], len(parts)) - 1
    by_close = parts[np.lexsort((parts["close_at"], parts["key"]))]
    out["close"] = by_close["close"][ends]
    out["close_at"] = by_close["close_at"][ends]
    return out


@attrs.define
class MinuteBars:
    """One-minute bars of every symbol seen, as columns, sorted by (symbol, minute)."""

    symbol: np.ndarray  # str
    minute: np.ndarray  # int64 minute start, ns since the epoch
    parts: np.ndarray  # PARTIAL records

    def __len__(self) -> int:
        return len(self.minute)

    def select(self, symbols: Iterable[str]) -> MinuteBars:
        """These symbols' bars: each is one run of the sorted rows, found by binary search (a
        day holds every symbol and is asked for a few at a time, unit after unit)."""
        wanted = np.array(sorted(set(symbols)), dtype=str)
        first = np.searchsorted(self.symbol, wanted, side="left")
        last = np.searchsorted(self.symbol, wanted, side="right")
        runs = [np.arange(a, b) for a, b in zip(first, last, strict=True) if b > a]
        rows = np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)
        return MinuteBars(self.symbol[rows], self.minute[rows], self.parts[rows])

    def to_table(
        self, timeframe: Timeframe = Timeframe.M1, windows: Sequence[SessionWindow] | None = None
    ) -> pa.Table:
        """Bars of ``timeframe`` (New York aligned, from the minutes inside ``windows``)."""
        minute, parts, symbol = self.minute, self.parts, self.symbol
        if windows is not None:
            keep = np.zeros(len(minute), dtype=bool)
            for window in windows:
                keep |= (minute >= window.start_ns) & (minute < window.end_ns)
            minute, parts, symbol = minute[keep], parts[keep], symbol[keep]
        if timeframe is not Timeframe.M1 and len(minute):
            minute, parts, symbol = _coarsen(minute, parts, symbol, timeframe)
        has = parts["open_at"] != _NONE
        volume = parts["volume"]
        mask = ~has

        def price(column: str) -> pa.Array:
            return pa.array(parts[column] / PRICE_SCALE, pa.float64(), mask=mask)

        vwap = np.divide(
            parts["pv"], volume * PRICE_SCALE, out=np.zeros(len(volume)), where=volume > 0
        )
        return pa.table(
            {
                "symbol": pa.array(symbol, pa.string()),
                "timestamp": pa.array(minute, pa.timestamp("ns", tz="UTC")),
                "open": price("open"),
                "high": price("high"),
                "low": price("low"),
                "close": price("close"),
                "volume": pa.array(volume, pa.int64()),
                "trade_count": pa.array(parts["count"], pa.int64()),
                "vwap": pa.array(vwap, pa.float64()),
            },
            schema=BAR_SCHEMA.remove_metadata(),
        )


def _coarsen(
    minute: np.ndarray, parts: np.ndarray, symbol: np.ndarray, timeframe: Timeframe
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minute bars to ``timeframe`` buckets that start at New York midnight plus multiples of it."""
    days = np.unique(minute // 86_400_000_000_000)
    # New York midnight of each minute: look it up among the few calendar days involved
    candidates = sorted(
        {
            ny_midnight_ns(dt.date(1970, 1, 1) + dt.timedelta(days=int(d) + k))
            for d in days
            for k in (-1, 0, 1)
        }
    )
    midnights = np.array(candidates, dtype=np.int64)
    midnight = midnights[np.searchsorted(midnights, minute, side="right") - 1]
    bucket = midnight + (minute - midnight) // timeframe.nanos * timeframe.nanos
    names, code = np.unique(symbol, return_inverse=True)
    rows = parts.copy()
    rows["key"] = (code.astype(np.int64) << 32) | (bucket // MINUTE)
    merged = _merge(rows)
    return (merged["key"] & 0xFFFFFFFF) * MINUTE, merged, names[merged["key"] >> 32]


class BarBuilder:
    """Feed it :class:`TradeBatch` es in stream order; ``finish()`` gives the minute bars.

    ``regular`` lists the regular-session windows of the capture's day(s): extended-hours trades
    set prices only outside them.
    """

    def __init__(self, regular: Iterable[SessionWindow] = (), merge_every: int = 1_000_000) -> None:
        self._regular = [(w.start_ns, w.end_ns) for w in regular]
        self._codes: dict[int, int] = {}
        self._parts: list[np.ndarray] = []
        self._pending = 0
        self._merge_every = merge_every
        self._seen = 0
        self._broken: list[np.ndarray] = []  # BREAKS rows: (symbol code, trade id, position)
        self._spill: BinaryIO | None = None

    def _code(self, symbols: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(symbols, return_inverse=True)
        codes = np.array(
            [self._codes.setdefault(int(s), len(self._codes)) for s in uniq], dtype=np.int64
        )
        return codes[inverse]

    def add(self, batch: TradeBatch) -> None:
        record = batch.record
        at = self._seen + np.arange(len(record), dtype=np.int64)
        self._seen += len(record)
        is_break = batch.is_break
        if is_break.any():
            breaks = np.empty(int(is_break.sum()), dtype=BREAKS)
            breaks["code"] = self._code(record["symbol"][is_break])
            breaks["trade_id"] = record["trade_id"][is_break]
            breaks["at"] = at[is_break]
            self._broken.append(breaks)
            record, at = record[~is_break], at[~is_break]
        if not len(record):
            return
        minute = record["timestamp"] // MINUTE * MINUTE
        flags = record["flags"]
        sets = (flags & FLAG_ODD_LOT) == 0
        extended = (flags & FLAG_EXTENDED) != 0
        if extended.any():
            inside = np.zeros(len(minute), dtype=bool)
            for start, end in self._regular:
                inside |= (minute >= start) & (minute < end)
            sets &= ~(extended & inside)
        key = (self._code(record["symbol"]) << 32) | (minute // MINUTE)
        price = record["price"]
        size = record["size"].astype(np.int64)
        self._spill_trades(record["trade_id"], key, price, size, sets, at)
        self._parts.append(_reduce(key, price, size, sets, at))
        self._pending += len(self._parts[-1])
        if self._pending >= self._merge_every:
            self._parts = [_merge(np.concatenate(self._parts))]
            self._pending = len(self._parts[0])

    def _spill_trades(self, *columns: np.ndarray) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="marketpipe-iex-trades-")  # noqa: SIM115 - closed by finish()
        rows = np.empty(len(columns[0]), dtype=SPILLED)
        for name, column in zip(SPILLED.names or (), columns, strict=True):
            rows[name] = column
        self._spill.write(rows.tobytes())

    def _broken_trades(self, breaks: np.ndarray) -> np.ndarray:
        """The spilled trades the breaks cancel. A break cancels the latest trade before it
        with the same symbol and trade id, and only that one: trade ids restart after a
        sequence reset, so an id alone may name several trades, of any symbol."""
        candidates = np.concatenate(
            [rows[np.isin(rows["trade_id"], breaks["trade_id"])] for rows in self._read_spill()]
            or [np.zeros(0, dtype=SPILLED)]
        )
        code = candidates["key"] >> 32
        positions: list[int] = []
        for brk in breaks:  # breaks are rare: a handful a day
            same = (
                (code == brk["code"])
                & (candidates["trade_id"] == brk["trade_id"])
                & (candidates["at"] < brk["at"])
            )
            if same.any():
                positions.append(int(candidates["at"][same].max()))
        return candidates[np.isin(candidates["at"], positions)]

    def _rebuild_broken(self, parts: np.ndarray) -> np.ndarray:
        cancelled = self._broken_trades(np.concatenate(self._broken))
        if not len(cancelled):
            return parts
        broken, keys = cancelled["at"], np.unique(cancelled["key"])
        kept: list[np.ndarray] = []
        for rows in self._read_spill():
            kept.append(rows[np.isin(rows["key"], keys) & ~np.isin(rows["at"], broken)])
        trades = np.concatenate(kept)
        # A bar whose every trade was broken is no bar at all: _reduce of nothing is nothing.
        rebuilt = _reduce(
            trades["key"], trades["price"], trades["size"], trades["sets"], trades["at"]
        )
        return np.concatenate([parts[~np.isin(parts["key"], keys)], rebuilt])

    def _read_spill(self, rows: int = 1 << 20) -> Iterable[np.ndarray]:
        assert self._spill is not None
        self._spill.seek(0)
        while data := self._spill.read(rows * SPILLED.itemsize):
            yield np.frombuffer(data, dtype=SPILLED)

    def finish(self) -> MinuteBars:
        parts = _merge(np.concatenate(self._parts)) if self._parts else np.zeros(0, PARTIAL)
        if self._broken and self._spill is not None:
            parts = _merge(self._rebuild_broken(parts))
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        names_by_code = np.empty(len(self._codes), dtype=np.uint64)
        for key, position in self._codes.items():
            names_by_code[position] = key
        names = symbol_names(names_by_code) if len(names_by_code) else np.zeros(0, dtype=str)
        codes = parts["key"] >> 32
        minute = (parts["key"] & 0xFFFFFFFF) * MINUTE
        symbol = names[codes] if len(parts) else np.zeros(0, dtype=str)
        order = np.lexsort((minute, symbol))
        return MinuteBars(symbol[order], minute[order], parts[order])
