"""Vectorised generation of one symbol-day of bars, then aggregation to the timeframe; the
trades and quotes beneath the one-minute bars, whose bars they are exactly."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
from marketpipe.model import clock
from marketpipe.model.actions import actions_table
from marketpipe.model.calendar import SessionWindow, ny_midnight_ns
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.instruments import instruments_table
from marketpipe.model.request import FetchRequest
from marketpipe.model.schema import bars_batch, repeat_string
from marketpipe.model.ticks import QUOTE_SCHEMA, REGULAR, TRADE_SCHEMA
from marketpipe.model.values import Timeframe
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.settings import parse_number

from marketpipe_fake.actions import (
    RENAMED,
    actions,
    base_price,
    company,
    rename_day,
    split_scale,
)
from marketpipe_fake.universe import instrument_rows, listed_days, names_on

_MINUTE = 60 * 1_000_000_000
_FIRST_MINUTE = 4 * 60  # 04:00 New York
_MINUTES = 16 * 60  # 04:00-20:00: every minute the extended session can ask for
_PROFILE = np.concatenate(
    [
        np.full(330, 0.08),  # pre-market 04:00-09:30
        0.6 + 2.4 * np.linspace(-1, 1, 390) ** 2,  # U-shaped regular session
        np.full(240, 0.06),  # after hours 16:00-20:00
    ]
)


def _rng(*parts: str) -> np.random.Generator:
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=16).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


class FakeProvider(IMarketDataProvider):
    """Deterministic random-walk bars."""

    feed = "sim"

    def __init__(self, seed: str = "0", bad_row_rate: str = "0") -> None:
        self.seed = str(
            int(parse_number("fake provider", "seed", seed, integer=True, positive=False))
        )
        self.bad_row_rate = parse_number(
            "fake provider", "bad_row_rate", bad_row_rate, positive=False
        )
        if not 0 <= self.bad_row_rate <= 1:
            raise InvalidInputError("fake provider: bad_row_rate must be between 0 and 1")

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        for symbol in request.symbols:
            windows = _listed(self.seed, symbol.value, request.windows)
            if not windows:
                continue
            if not request.timeframe.is_bar:
                minutes = self._symbol(symbol.value, windows, Timeframe.M1, with_filler=True)
                trades = trades_of(symbol.value, minutes)
                if request.timeframe is Timeframe.TRADES:
                    yield from trades.to_batches()
                else:
                    yield from quotes_of(trades).to_batches()
                continue
            columns = self._symbol(symbol.value, windows, request.timeframe)
            if self.bad_row_rate > 0:
                columns = self._corrupt(symbol.value, request, columns)
            yield bars_batch(symbol.value, *columns)

    def fetch_instruments(self) -> pa.Table:
        """The Fake market's universe (:mod:`marketpipe_fake.universe`), as known now."""
        return instruments_table(instrument_rows(self.seed, clock.now()))

    def list_symbols(self, windows: Sequence[SessionWindow]) -> list[str]:
        """The universe's symbols listed on any of these days, under their names then."""
        return sorted({name for w in windows for name in names_on(self.seed, w.day)})

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pa.Table:
        """The market's actions of ``symbols`` (as the old or the new name) with an ex-date in
        ``start``..``end``, as known now (processed by today, ``MARKETPIPE_NOW`` pins it)."""
        today = clock.now().date()
        fetched_at = clock.now()
        rows = []
        for symbol in dict.fromkeys(symbols):
            for action in actions(self.seed, symbol, range(start.year, end.year + 1)):
                if start <= action.ex_date <= end and action.process_date <= today:
                    rows.append({**action.record(), "provider": "fake", "fetched_at": fetched_at})
        unique = {row["id"]: row for row in rows}  # a rename is both names'
        return actions_table(sorted(unique.values(), key=lambda r: (r["ex_date"], r["id"])))

    def _symbol(
        self,
        symbol: str,
        windows: tuple[SessionWindow, ...],
        timeframe: Timeframe,
        with_filler: bool = False,
    ) -> list[np.ndarray]:
        """All days of one symbol at once: one seeded draw per day, arithmetic on (days, minutes)."""
        days = len(windows)
        normals = np.empty((days, 4, _MINUTES))
        uniforms = np.empty((days, 2, _MINUTES))
        opening = np.empty(days)
        name = company(symbol)  # a renamed company keeps its walk
        for i, window in enumerate(windows):
            # Each (seed, symbol, day) has its own stream: a day's bars never depend on the range.
            rng = _rng(self.seed, name, window.day.isoformat())
            normals[i] = rng.standard_normal((4, _MINUTES))
            uniforms[i] = rng.random((2, _MINUTES))
            opening[i] = rng.standard_normal()
        base = base_price(name)
        midnight = np.array([ny_midnight_ns(w.day) for w in windows], dtype=np.int64)[:, None]
        starts = np.array([w.start_ns for w in windows], dtype=np.int64)[:, None]
        ends = np.array([w.end_ns for w in windows], dtype=np.int64)[:, None]
        # The walk runs from 04:00 so a session's bars never depend on which session was asked;
        # everything after the walk is computed only for the minutes some window keeps.
        first = int(((starts - midnight).min() // _MINUTE) - _FIRST_MINUTE)
        last = int(((ends - midnight).max() // _MINUTE) - _FIRST_MINUTE)
        first, last = max(first, 0), min(max(last, first), _MINUTES)
        start = base * np.exp(0.05 * opening)[:, None]
        walk = start * np.exp(np.cumsum(0.0007 * normals[:, 0, :last], axis=1))
        previous = walk[:, first - 1 : first] if first else start
        close = np.round(walk[:, first:], 2)
        open_ = np.concatenate((np.round(previous, 2), close[:, :-1]), axis=1)
        normals, uniforms = normals[:, :, first:last], uniforms[:, :, first:last]
        top, bottom = np.maximum(open_, close), np.minimum(open_, close)
        high = np.maximum(np.ceil(top * (1 + 0.0004 * np.abs(normals[:, 1])) * 100) / 100, top)
        low = np.minimum(
            np.floor(bottom * (1 - 0.0004 * np.abs(normals[:, 2])) * 100) / 100, bottom
        )
        volume = np.maximum(1, np.exp(7.0 + 0.6 * normals[:, 3]) * _PROFILE[first:last]).astype(
            np.int64
        )
        trade_count = np.maximum(1, volume // (40 + (uniforms[:, 0] * 120).astype(np.int64)))
        ts = midnight + (_FIRST_MINUTE + np.arange(first, last, dtype=np.int64)) * _MINUTE
        # Raw prices obey the splits: before a 2-for-1 split a share costs twice as much.
        scale = np.array(split_scale(self.seed, symbol, [w.day for w in windows]))[:, None]
        if np.any(scale != 1.0):
            open_, high, low, close = (np.round(a * scale, 2) for a in (open_, high, low, close))
            volume = np.maximum(1, np.round(volume / scale)).astype(np.int64)
        # Every minute is its trades (:func:`trades_of`): at least four, open, high, low and
        # close among them, the rest at one price in between; the vwap is theirs.
        trade_count = np.maximum(trade_count, 4)
        volume = np.maximum(volume, trade_count)
        filler = np.clip(np.round(low + (high - low) * uniforms[:, 1], 2), low, high)
        vwap = _vwap(open_, high, low, close, filler, volume, trade_count)
        keep = (ts >= starts) & (ts < ends)
        cols = [a[keep] for a in (ts, open_, high, low, close, volume, trade_count, vwap)]
        if with_filler:
            cols.append(filler[keep])
        if timeframe is Timeframe.M1:
            return cols
        return _aggregate(cols, np.broadcast_to(midnight, ts.shape)[keep], timeframe)

    def _corrupt(
        self, symbol: str, request: FetchRequest, cols: list[np.ndarray]
    ) -> list[np.ndarray]:
        ts, o, h, lo, c, v, n, w = (col.copy() for col in cols)
        days = ",".join(d.isoformat() for d in request.days)
        rng = _rng(self.seed, symbol, days, request.timeframe.value, "bad")
        bad = np.flatnonzero(rng.random(len(ts)) < self.bad_row_rate)
        kinds = bad % 4
        h[bad[kinds == 0]] = lo[bad[kinds == 0]] - 0.01  # high below low
        v[bad[kinds == 1]] = -v[bad[kinds == 1]]  # negative volume
        ts[bad[kinds == 2]] += 7 * 1_000_000_000  # off the bar grid
        dup = bad[(kinds == 3) & (bad > 0)]
        ts[dup] = ts[dup - 1]  # duplicate of the previous bar's timestamp
        return [ts, o, h, lo, c, v, n, w]


_TICK = 10_000  # prices in ten-thousandths, as trade_bars sums them


def _sizes(volume: np.ndarray, count: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The size of the trade at ``position`` of a minute of ``count`` trades: the volume shared
    out evenly, the first ``volume % count`` trades one share more."""
    sizes: np.ndarray = volume // count + (position < volume % count)
    return sizes


def _vwap(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    filler: np.ndarray,
    volume: np.ndarray,
    count: np.ndarray,
) -> np.ndarray:
    """The vwap of each minute's trades (:func:`trades_of`) without making them, in the same
    arithmetic as :func:`marketpipe.dataset.trade_bars.bars_from_trades` (whole ten-thousandths
    summed, then divided): bars built from the trades equal the bars exactly."""
    first, second, third = (_sizes(volume, count, np.full_like(count, i)) for i in (0, 1, 2))
    last = _sizes(volume, count, count - 1)
    rest = volume - first - second - third - last
    ticks = [np.rint(p * _TICK) for p in (open_, high, low, filler, close)]
    pv = (
        ticks[0] * first.astype(np.float64)
        + ticks[1] * second.astype(np.float64)
        + ticks[2] * third.astype(np.float64)
        + ticks[3] * rest.astype(np.float64)
        + ticks[4] * last.astype(np.float64)
    )
    result: np.ndarray = pv / (volume.astype(np.float64) * _TICK)
    return result


def trades_of(symbol: str, minutes: list[np.ndarray]) -> pa.Table:
    """The trades of one symbol's one-minute bars (with each minute's filler price): in each
    minute, evenly spaced, the open first, then the high and the low, the rest at the filler
    price, the close last; sizes share the volume out (:func:`_sizes`). Their one-minute bars
    are the bars, exactly; ``id`` and ``sequence`` count from the minute of the day, so a day's
    trades never depend on the range asked."""
    ts, open_, high, low, close, volume, count, _, filler = minutes
    n = int(count.sum())
    bar = np.repeat(np.arange(len(ts)), count)
    position = np.arange(n) - np.repeat(np.cumsum(count) - count, count)
    per = count[bar]
    price = filler[bar].copy()
    price[position == 0] = open_[bar][position == 0]
    price[position == 1] = high[bar][position == 1]
    price[position == 2] = low[bar][position == 2]
    price[position == per - 1] = close[bar][position == per - 1]
    size = _sizes(volume[bar], per, position)
    stamp = ts[bar] + position * (_MINUTE // per)
    minute_of_day = (ts[bar] // _MINUTE) % (24 * 60)
    sequence = minute_of_day * 10_000 + position
    return pa.table(
        {
            "symbol": repeat_string(symbol, n),
            "timestamp": pa.array(stamp, pa.int64()).cast(TRADE_SCHEMA.field("timestamp").type),
            "sip_timestamp": pa.nulls(n, TRADE_SCHEMA.field("sip_timestamp").type),
            "price": pa.array(price, pa.float64()),
            "size": pa.array(size.astype(np.float64), pa.float64()),
            "exchange": repeat_string("FAKE", n),
            "id": pa.array(sequence, pa.int64()).cast(pa.string()),
            "conditions": pa.ListArray.from_arrays(
                pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string())
            ),
            "tape": pa.nulls(n, pa.string()),
            "correction": repeat_string(REGULAR, n),
            "sequence": pa.array(sequence, pa.int64()),
        },
        schema=TRADE_SCHEMA,
    )


def quotes_of(trades: pa.Table) -> pa.Table:
    """A quote at each trade: a cent either side of its price, 100 shares bid, 200 offered."""
    n = trades.num_rows
    price = np.asarray(trades["price"].to_numpy(), dtype=np.float64)
    venue = repeat_string("FAKE", n)
    return pa.table(
        {
            "symbol": trades["symbol"],
            "timestamp": trades["timestamp"],
            "bid_price": pa.array(np.round(price - 0.01, 2), pa.float64()),
            "bid_size": pa.array(np.full(n, 100.0), pa.float64()),
            "ask_price": pa.array(np.round(price + 0.01, 2), pa.float64()),
            "ask_size": pa.array(np.full(n, 200.0), pa.float64()),
            "bid_exchange": venue,
            "ask_exchange": venue,
            "conditions": trades["conditions"],
            "tape": trades["tape"],
            "sequence": trades["sequence"],
        },
        schema=QUOTE_SCHEMA,
    )


def _listed(
    seed: str, symbol: str, windows: tuple[SessionWindow, ...]
) -> tuple[SessionWindow, ...]:
    """The windows on which ``symbol`` trades under that name (a renamed company's old name
    before the rename day, its new one from that day; a listed symbol of the universe between
    its first and last day)."""
    first, last = listed_days(symbol)
    if first or last:
        windows = tuple(
            w for w in windows if (not first or w.day >= first) and (not last or w.day <= last)
        )
    if symbol not in RENAMED:
        return windows
    day = rename_day(seed)
    if symbol == RENAMED[0]:
        return tuple(w for w in windows if w.day < day)
    return tuple(w for w in windows if w.day >= day)


def _aggregate(
    cols: list[np.ndarray], midnight: np.ndarray, timeframe: Timeframe
) -> list[np.ndarray]:
    """One-minute bars to ``timeframe`` bars, each stamped at its New York bucket start."""
    ts, o, h, lo, c, v, n, w = cols
    if len(ts) == 0:
        return cols
    bucket_start = midnight + (ts - midnight) // timeframe.nanos * timeframe.nanos
    starts = np.flatnonzero(np.concatenate(([True], bucket_start[1:] != bucket_start[:-1])))
    ends = np.concatenate((starts[1:], [len(ts)])) - 1
    volume = np.add.reduceat(v, starts)
    return [
        bucket_start[starts],
        o[starts],
        np.maximum.reduceat(h, starts),
        np.minimum.reduceat(lo, starts),
        c[ends],
        volume,
        np.add.reduceat(n, starts),
        np.round(np.add.reduceat(w * v, starts) / volume, 4),
    ]
