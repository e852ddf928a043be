"""Trades to bars: the consolidated-tape convention, breaks, timeframes; against a plain-Python
reference over encoded captures (decoded in small chunks, so partial bars merge often)."""

from __future__ import annotations

import datetime as dt
import io
import random
from collections import defaultdict

import pyarrow as pa
import pytest
from iex_encoder import broken_by, ns, pcapng, segments_of, trade, trade_break
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Session, Timeframe, TimeRange
from marketpipe_iex.bars import BarBuilder
from marketpipe_iex.decode import CaptureDecoder

DAY = dt.date(2024, 3, 4)  # a Monday
REGULAR = nyse_calendar().windows(TimeRange(DAY, DAY), Session.REGULAR)
EXTENDED = nyse_calendar().windows(TimeRange(DAY, DAY), Session.EXTENDED)
MINUTE = 60_000_000_000


def build(
    messages: list[bytes | None], chunk_size: int = 1 << 20, merge_every: int = 1_000_000
) -> BarBuilder:
    capture = pcapng(segments_of(messages, ns(DAY, "04:00"), per_segment=5))
    builder = BarBuilder(REGULAR, merge_every=merge_every)
    for batch in CaptureDecoder(io.BytesIO(capture.data), chunk_size=chunk_size).trades():
        builder.add(batch)
    return builder


def rows(table: pa.Table) -> dict[tuple[str, int], dict[str, object]]:
    out = {}
    for row in table.to_pylist():
        out[(row["symbol"], int(row["timestamp"].timestamp() * 1e9))] = row
    return out


def reference(trades: list[tuple[int, str, int, int, int, int]], broken: set[int]) -> dict:
    """(ts, symbol, size, price_raw, trade_id, flags) in stream order -> bars, the plain way."""
    regular = REGULAR[0]
    bars: dict[tuple[str, int], dict[str, object]] = {}
    groups: dict[tuple[str, int], list] = defaultdict(list)
    for t in trades:
        if t[4] not in broken:
            groups[(t[1], t[0] // MINUTE * MINUTE)].append(t)
    for (symbol, minute), items in groups.items():
        inside = regular.start_ns <= minute < regular.end_ns
        setting = [t for t in items if not t[5] & 0x20 and not (t[5] & 0x40 and inside)]
        volume = sum(t[2] for t in items)
        bars[(symbol, minute)] = {
            "open": setting[0][3] / 1e4 if setting else None,
            "high": max(t[3] for t in setting) / 1e4 if setting else None,
            "low": min(t[3] for t in setting) / 1e4 if setting else None,
            "close": setting[-1][3] / 1e4 if setting else None,
            "volume": volume,
            "trade_count": len(items),
            "vwap": sum(t[2] * t[3] for t in items) / volume / 1e4,
        }
    return bars


def test_the_convention_case_by_case() -> None:
    t = ns(DAY, "10:00")
    messages: list[bytes | None] = [
        trade(t, "AAPL", 100, 170.0, 1),
        trade(t + 1, "AAPL", 10, 999.0, 2, flags=0x20),  # odd lot: counts, sets nothing
        trade(t + 2, "AAPL", 100, 150.0, 3, flags=0x40),  # extended inside regular: same
        trade(t + 3, "AAPL", 100, 171.0, 4, flags=0x80),  # intermarket sweep: sets
        trade(t + MINUTE, "AAPL", 5, 170.5, 5, flags=0x20),  # a minute of odd lots only
        trade(ns(DAY, "08:00"), "AAPL", 100, 168.0, 6, flags=0x40),  # pre-market: sets
        trade(t + 2 * MINUTE, "AAPL", 100, 200.0, 7),  # the high, broken below
        trade(t + 2 * MINUTE + 1, "AAPL", 100, 172.0, 8),
        trade_break(t + 3 * MINUTE, "AAPL", 100, 200.0, 7),
        trade(t + 4 * MINUTE, "MSFT", 100, 400.0, 9),
        trade_break(t + 5 * MINUTE, "MSFT", 100, 400.0, 9),  # its only trade: no bar at all
    ]
    got = rows(build(messages).finish().to_table())
    bar = got[("AAPL", t)]
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (170.0, 171.0, 170.0, 171.0)
    assert bar["volume"] == 310 and bar["trade_count"] == 4
    assert bar["vwap"] == pytest.approx((100 * 170 + 10 * 999 + 100 * 150 + 100 * 171) / 310)
    odd = got[("AAPL", t + MINUTE)]
    assert odd["open"] is None and odd["close"] is None and odd["volume"] == 5
    assert odd["trade_count"] == 1 and odd["vwap"] == pytest.approx(170.5)
    assert got[("AAPL", ns(DAY, "08:00"))]["open"] == 168.0
    after = got[("AAPL", t + 2 * MINUTE)]
    assert (after["open"], after["high"], after["volume"], after["trade_count"]) == (
        172.0,
        172.0,
        100,
        1,
    )
    assert not any(symbol == "MSFT" for symbol, _ in got)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_days_match_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    start, end = ns(DAY, "04:00"), ns(DAY, "20:00")
    trades = []
    messages: list[bytes | None] = []
    for i in range(3000):
        ts = start + int((end - start) * (i / 3000)) + rng.randrange(1000)
        symbol = rng.choice(["AAPL", "MSFT", "ZVZZT"])
        flags = rng.choice([0, 0, 0, 0x20, 0x40, 0x60, 0x80, 0xC0, 0x10, 0x08])
        size = rng.randrange(1, 500)
        price = rng.randrange(990_000, 1_010_000)
        trades.append((ts, symbol, size, price, i + 1, flags))
        messages.append(trade(ts, symbol, size, price / 1e4, i + 1, flags))
        if rng.random() < 0.05:
            messages.append(None)
    broken = set(rng.sample(range(1, 3001), 60))
    for trade_id in sorted(broken):
        ts, symbol, size, price, _, flags = trades[trade_id - 1]
        messages.append(trade_break(end, symbol, size, price / 1e4, trade_id))
    expected = reference(trades, broken)
    got = rows(build(messages, chunk_size=4096, merge_every=50).finish().to_table())
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]
        for column in ("open", "high", "low", "close", "volume", "trade_count"):
            assert have[column] == want[column], (key, column)
        assert have["vwap"] == pytest.approx(want["vwap"])


@pytest.mark.parametrize("timeframe", [Timeframe.M5, Timeframe.H1, Timeframe.D1])
def test_higher_timeframes_aggregate_the_minutes(timeframe: Timeframe) -> None:
    rng = random.Random(7)
    messages: list[bytes | None] = []
    start = ns(DAY, "09:00")
    for i in range(800):
        ts = start + i * 37 * 10**9
        flags = rng.choice([0, 0x20, 0x40])
        messages.append(
            trade(
                ts,
                rng.choice(["AAPL", "MSFT"]),
                rng.randrange(1, 300),
                rng.randrange(100, 200),
                i + 1,
                flags,
            )
        )
    minutes = build(messages).finish()
    fine = minutes.to_table(Timeframe.M1, REGULAR).to_pylist()
    coarse = rows(minutes.to_table(timeframe, REGULAR))
    midnight = ns(DAY, "00:00")
    buckets: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in fine:
        minute = int(row["timestamp"].timestamp() * 1e9)
        bucket = midnight + (minute - midnight) // timeframe.nanos * timeframe.nanos
        buckets[(row["symbol"], bucket)].append(row)
    assert set(coarse) == set(buckets)
    for key, items in buckets.items():
        priced = [r for r in items if r["open"] is not None]
        bar = coarse[key]
        assert bar["volume"] == sum(r["volume"] for r in items)
        assert bar["trade_count"] == sum(r["trade_count"] for r in items)
        assert bar["open"] == (priced[0]["open"] if priced else None)
        assert bar["close"] == (priced[-1]["close"] if priced else None)
        assert bar["high"] == (max(r["high"] for r in priced) if priced else None)
        assert bar["low"] == (min(r["low"] for r in priced) if priced else None)
        assert bar["vwap"] == pytest.approx(
            sum(r["vwap"] * r["volume"] for r in items) / bar["volume"]
        )


def test_session_windows_select_minutes() -> None:
    messages: list[bytes | None] = [
        trade(ns(DAY, "07:00"), "AAPL", 100, 10.0, 1),
        trade(ns(DAY, "09:30"), "AAPL", 100, 10.0, 2),
        trade(ns(DAY, "15:59", 59.9), "AAPL", 100, 10.0, 3),
        trade(ns(DAY, "16:00"), "AAPL", 100, 10.0, 4),
        trade(ns(DAY, "20:00"), "AAPL", 100, 10.0, 5),
    ]
    minutes = build(messages).finish()
    assert minutes.to_table(Timeframe.M1, REGULAR).num_rows == 2
    assert minutes.to_table(Timeframe.M1, EXTENDED).num_rows == 4
    assert minutes.to_table(Timeframe.M1).num_rows == 5


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_break_cancels_only_the_latest_earlier_trade_of_its_symbol_and_id(seed: int) -> None:
    # Trade ids restart after a sequence reset and are shared between symbols: a break names a
    # (symbol, id), and cancels the latest trade before it that has both.
    rng = random.Random(seed)
    start = ns(DAY, "04:00")
    stream: list[tuple[str, tuple]] = []
    for i in range(1500):
        ts = start + i * 20 * 10**9
        if stream and rng.random() < 0.08:
            _, earlier = rng.choice([s for s in stream if s[0] == "T"])
            stream.append(("B", (ts, earlier[1], earlier[2], earlier[3], earlier[4], 0)))
            continue
        symbol = rng.choice(["AAPL", "MSFT", "ZVZZT"])
        trade_id = rng.randrange(1, 40)  # few ids: many trades share one
        stream.append(
            (
                "T",
                (ts, symbol, rng.randrange(1, 500), rng.randrange(990_000, 1_010_000), trade_id, 0),
            )
        )
    cancelled = broken_by(stream)
    trades = [row for kind, row in stream if kind == "T"]
    positions = [p for p, (kind, _) in enumerate(stream) if kind == "T"]
    kept = [t for t, p in zip(trades, positions, strict=True) if p not in cancelled]
    expected = reference(kept, set())
    messages: list[bytes | None] = [
        trade(r[0], r[1], r[2], r[3] / 1e4, r[4])
        if kind == "T"
        else trade_break(r[0], r[1], r[2], r[3] / 1e4, r[4])
        for kind, r in stream
    ]
    got = rows(build(messages, chunk_size=4096, merge_every=50).finish().to_table())
    assert cancelled and set(got) == set(expected)
    for key, want in expected.items():
        for column in ("open", "high", "low", "close", "volume", "trade_count"):
            assert got[key][column] == want[column], (key, column)


def test_breaks_that_leave_minutes_with_no_trade_at_all_are_no_bars() -> None:
    t = ns(DAY, "10:00")
    messages: list[bytes | None] = [
        trade(t, "AAPL", 100, 170.0, 1),
        trade(t + 1, "AAPL", 100, 171.0, 2),
        trade(t + MINUTE, "MSFT", 100, 400.0, 3),
        trade_break(t + 2 * MINUTE, "AAPL", 100, 170.0, 1),
        trade_break(t + 2 * MINUTE, "AAPL", 100, 171.0, 2),
        trade_break(t + 2 * MINUTE, "MSFT", 100, 400.0, 3),
        trade_break(t + 2 * MINUTE, "SPY", 100, 400.0, 3),  # names no trade: changes nothing
    ]
    table = build(messages).finish().to_table()
    assert table.num_rows == 0
