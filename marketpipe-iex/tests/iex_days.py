"""Whole trading days of encoded captures, for provider and CLI tests."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from iex_encoder import gzipped, ns, pcapng, quote, segments_of, trade, trade_break

SYMBOLS = ("AAPL", "MSFT", "ZVZZT")


def day_messages(
    day: dt.date, seed: int = 0, trades_per_symbol: int = 400, breaks: int = 0
) -> list[bytes | None]:
    """Trades from 04:00 to 20:00 New York for each symbol (some odd lots, some extended-hours),
    a quote now and then, heartbeats; with ``breaks``, every ``breaks``-th trade is broken
    right after it is printed."""
    rng = random.Random(f"{day}-{seed}")
    start, end = ns(day, "04:00"), ns(day, "20:00")
    events = []
    trade_id = 1
    for symbol in SYMBOLS:
        price = {"AAPL": 170.0, "MSFT": 410.0, "ZVZZT": 10.0}[symbol]
        for _ in range(trades_per_symbol):
            ts = rng.randrange(start, end)
            inside = ns(day, "09:30") <= ts < ns(day, "16:00")
            flags = rng.choice([0, 0, 0, 0x20, 0x80]) | (0 if inside else 0x40)
            price = round(max(1.0, price * (1 + rng.gauss(0, 0.001))), 2)
            events.append((ts, symbol, rng.randrange(1, 400), price, flags))
    events.sort()
    messages: list[bytes | None] = []
    for i, (ts, symbol, size, price, flags) in enumerate(events):
        messages.append(trade(ts, symbol, size, price, trade_id + i, flags))
        if breaks and i % breaks == breaks - 1:
            messages.append(trade_break(ts, symbol, size, price, trade_id + i))
        if i % 7 == 0:
            messages.append(quote(ts, symbol, price - 0.01, price + 0.01))
        if i % 50 == 0:
            messages.append(None)
    return messages


def write_day(folder: Path, day: dt.date, name: str | None = None, **options: int) -> Path:
    capture = pcapng(segments_of(day_messages(day, **options), ns(day, "03:59"), per_segment=4))
    path = folder / (name or f"capture-{day:%Y%m%d}.bin")  # the name says nothing on purpose
    path.write_bytes(gzipped(capture.data))
    return path


def write_days(folder: Path, days: list[dt.date], **options: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_day(folder, day, **options) for day in days]
