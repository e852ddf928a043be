"""Vectorised generation of one symbol-day of bars, then aggregation to the timeframe."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from marketpipe.calendar import SessionWindow, ny_midnight_ns
from marketpipe.errors import InvalidInputError
from marketpipe.ingestion.domain.ports import IMarketDataProvider
from marketpipe.ingestion.domain.request import FetchRequest
from marketpipe.ingestion.domain.values import Timeframe
from marketpipe.schema import bars_batch

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


def _parse(name: str, value: str, kind: type) -> float:
    try:
        return float(kind(value))
    except ValueError:
        raise InvalidInputError(f"fake provider: {name} must be a number, got {value!r}") from None


class FakeProvider(IMarketDataProvider):
    """Deterministic random-walk bars."""

    feed = "sim"

    def __init__(self, seed: str = "0", bad_row_rate: str = "0") -> None:
        self.seed = str(int(_parse("seed", seed, int)))
        self.bad_row_rate = _parse("bad_row_rate", bad_row_rate, float)
        if not 0 <= self.bad_row_rate <= 1:
            raise InvalidInputError("fake provider: bad_row_rate must be between 0 and 1")

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        for symbol in request.symbols:
            parts = [self._day(symbol.value, w, request.timeframe) for w in request.windows]
            if not parts:
                continue
            columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
            if self.bad_row_rate > 0:
                columns = self._corrupt(symbol.value, request, columns)
            yield bars_batch(symbol.value, *columns)

    def _day(self, symbol: str, window: SessionWindow, timeframe: Timeframe) -> list[np.ndarray]:
        day = window.day.isoformat()
        rng = _rng(self.seed, symbol, day)
        base = (
            10.0
            + (
                int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=4).digest(), "little")
                % 49_000
            )
            / 100.0
        )
        start = base * np.exp(rng.normal(0.0, 0.05))
        steps = rng.normal(0.0, 0.0007, _MINUTES)
        close = np.round(start * np.exp(np.cumsum(steps)), 2)
        open_ = np.concatenate(([round(start, 2)], close[:-1]))
        wiggle = np.abs(rng.normal(0.0, 0.0004, (2, _MINUTES)))
        high = np.maximum(
            np.ceil(np.maximum(open_, close) * (1 + wiggle[0]) * 100) / 100,
            np.maximum(open_, close),
        )
        low = np.minimum(
            np.floor(np.minimum(open_, close) * (1 - wiggle[1]) * 100) / 100,
            np.minimum(open_, close),
        )
        volume = np.maximum(1, (rng.lognormal(7.0, 0.6, _MINUTES) * _PROFILE)).astype(np.int64)
        trade_count = np.maximum(1, volume // rng.integers(40, 160, _MINUTES))
        vwap = np.clip(np.round(low + (high - low) * rng.random(_MINUTES), 4), low, high)
        midnight = ny_midnight_ns(window.day)
        ts = midnight + (_FIRST_MINUTE + np.arange(_MINUTES, dtype=np.int64)) * _MINUTE
        keep = (ts >= window.start_ns) & (ts < window.end_ns)
        cols = [
            ts[keep],
            open_[keep],
            high[keep],
            low[keep],
            close[keep],
            volume[keep],
            trade_count[keep],
            vwap[keep],
        ]
        if timeframe is Timeframe.M1:
            return cols
        return _aggregate(cols, midnight, timeframe)

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


def _aggregate(cols: list[np.ndarray], midnight: int, timeframe: Timeframe) -> list[np.ndarray]:
    ts, o, h, lo, c, v, n, w = cols
    if len(ts) == 0:
        return cols
    bucket = (ts - midnight) // timeframe.nanos
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(ts)])) - 1
    volume = np.add.reduceat(v, starts)
    return [
        midnight + bucket[starts] * timeframe.nanos,
        o[starts],
        np.maximum.reduceat(h, starts),
        np.minimum.reduceat(lo, starts),
        c[ends],
        volume,
        np.add.reduceat(n, starts),
        np.round(np.add.reduceat(w * v, starts) / volume, 4),
    ]
