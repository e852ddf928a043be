"""A capture's trade reports as canonical trades: every field, and breaks marking trades
canceled (the same match the bars use)."""

from __future__ import annotations

import datetime as dt
import io
import random
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from iex_encoder import broken_by, ns, pcapng, quote, segments_of, trade, trade_break
from marketpipe.dataset.trade_bars import bars_from_trades
from marketpipe.model.calendar import SessionWindow, nyse_calendar
from marketpipe.model.ticks import QUOTE_SCHEMA, TRADE_SCHEMA
from marketpipe.model.values import Session
from marketpipe_iex.bars import BarBuilder
from marketpipe_iex.decode import CaptureDecoder
from marketpipe_iex.ticks import IEX_RULES, TradeTable, quote_table, trade_table
from test_iex_real_captures import SAMPLE, needs_sample

DAY = dt.date(2024, 3, 4)


def table_of(messages: list[bytes | None], chunk_size: int = 1 << 20) -> TradeTable:
    capture = pcapng(segments_of(messages, ns(DAY, "04:00"), per_segment=5))
    return trade_table(CaptureDecoder(io.BytesIO(capture.data), chunk_size=chunk_size).trades())


def test_each_field_of_a_trade_report() -> None:
    t = ns(DAY, "09:31", 1.5)
    got = table_of([trade(t, "AAPL", 37, 191.2345, 77, flags=0xA0)])
    assert got.table.schema == TRADE_SCHEMA and got.unmatched == 0
    row = got.table.to_pylist()[0]
    assert row["symbol"] == "AAPL" and row["id"] == "77" and row["exchange"] == "V"
    assert row["price"] == 191.2345 and row["size"] == 37.0
    assert got.table["timestamp"].cast("int64").to_pylist() == [t]
    assert row["conditions"] == ["intermarket_sweep", "odd_lot"]
    assert row["correction"] == "regular"
    assert row["tape"] is None and row["sip_timestamp"] is None and row["sequence"] is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_break_cancels_the_latest_earlier_trade_of_its_symbol_and_id(seed: int) -> None:
    rng = random.Random(seed)
    start = ns(DAY, "09:30")
    stream: list[tuple[str, tuple]] = []
    for i in range(600):
        ts = start + i * 10**9
        if stream and rng.random() < 0.1:
            _, earlier = rng.choice([s for s in stream if s[0] == "T"])
            stream.append(("B", (ts, earlier[1], earlier[2], earlier[3], earlier[4])))
            continue
        symbol = rng.choice(["AAPL", "MSFT"])
        stream.append(("T", (ts, symbol, rng.randrange(1, 500), 100 + i / 100, rng.randrange(9))))
    stream.append(("B", (start + 10**12, "ZVZZT", 1, 1.0, 5)))  # names no trade at all
    canceled = broken_by(stream)
    got = table_of(
        [(trade if kind == "T" else trade_break)(*row) for kind, row in stream], chunk_size=4096
    )
    trades = [(p, row) for p, (kind, row) in enumerate(stream) if kind == "T"]
    assert got.table.num_rows == len(trades)
    expected = ["canceled" if p in canceled else "regular" for p, _ in trades]
    assert canceled and got.table["correction"].to_pylist() == expected
    assert got.unmatched == 1
    assert got.table["id"].to_pylist() == [str(row[4]) for _, row in trades]


@needs_sample
def test_the_sample_days_trades_are_every_published_one() -> None:
    decoder = CaptureDecoder(SAMPLE)
    got = trade_table(decoder.trades())
    table = got.table
    assert table.num_rows == 21_672 and got.unmatched == 0
    assert pc.sum(table["size"]).as_py() == 55_296_562
    assert pc.count_distinct(table["symbol"]).as_py() == 38
    first, last = table.slice(0, 1).to_pylist()[0], table.slice(table.num_rows - 1).to_pylist()[0]
    assert (first["symbol"], first["size"], first["price"], first["id"]) == (
        "ZXIET",
        100.0,
        99.97,
        "967187",
    )
    assert first["conditions"] == ["intermarket_sweep", "extended_hours"]  # flags 0xC0
    assert table["timestamp"].cast("int64")[0].as_py() == 1517059857193914072
    assert (last["symbol"], last["size"], last["price"], last["id"]) == (
        "AVP",
        100.0,
        2.38,
        "29868321",
    )
    assert table["timestamp"].cast("int64")[-1].as_py() == 1517073383878035832
    assert set(table["correction"].to_pylist()) == {"regular"}


def test_one_pass_gives_trades_and_quotes_and_a_zero_quote_is_no_quote() -> None:
    t = ns(DAY, "09:30")
    messages: list[bytes | None] = [
        struct.pack("<cBq8sIqqI", b"Q", 0, t, b"AAPL    ", 0, 0, 0, 0),  # before trading
        quote(t + 1, "AAPL", 190.01, 190.05),
        trade(t + 2, "AAPL", 10, 190.03, 1),
        quote(t + 3, "AAPL", 0.0, 190.04),  # no bid left
    ]
    capture = pcapng(segments_of(messages, ns(DAY, "04:00"), per_segment=2))
    decoder = CaptureDecoder(io.BytesIO(capture.data), chunk_size=4096)
    trades, quotes = [], []
    for batch, updates in decoder.trades_and_quotes():
        trades.append(batch)
        quotes.append(updates)
    got = quote_table(quotes)
    assert got.table.schema == QUOTE_SCHEMA and got.zero == 1
    rows = got.table.to_pylist()
    assert [(r["bid_price"], r["bid_size"], r["ask_price"], r["ask_size"]) for r in rows] == [
        (190.01, 100.0, 190.05, 200.0),
        (None, None, 190.04, 200.0),
    ]
    assert got.table["timestamp"].cast("int64").to_pylist() == [t + 1, t + 3]
    assert trade_table(trades).table["price"].to_pylist() == [190.03]


@needs_sample
def test_the_sample_days_quote_updates_and_message_47270() -> None:
    decoder = CaptureDecoder(SAMPLE)
    updates = [quotes for _, quotes in decoder.trades_and_quotes()]
    got = quote_table(updates)
    assert got.table.num_rows + got.zero == 41_959 == decoder.stats.count("Q")
    stamps = got.table["timestamp"].cast("int64")
    (at,) = [i for i, v in enumerate(stamps.to_pylist()) if v == 1517065649985331707]
    row = got.table.slice(at, 1).to_pylist()[0]
    assert (row["symbol"], row["bid_size"], row["bid_price"]) == ("AUO", 1280.0, 4.06)
    assert (row["ask_size"], row["ask_price"], row["conditions"]) == (19232.0, 4.34, [])


def same_bars(ours: pa.Table, theirs: pa.Table) -> None:
    assert ours.num_rows == theirs.num_rows
    for column in ours.column_names:
        assert ours[column].to_pylist() == theirs[column].to_pylist(), column


@pytest.mark.parametrize("seed", [7, 8])
def test_bars_built_from_the_stored_trades_are_the_captures_bars(seed: int) -> None:
    rng = random.Random(seed)
    start = ns(DAY, "09:00")
    rows: list[tuple[str, tuple]] = []
    for i in range(1200):
        ts = start + i * 3 * 10**9
        if rows and rng.random() < 0.05:
            _, earlier = rng.choice([r for r in rows if r[0] == "T"])
            rows.append(("B", (ts, *earlier[1:5])))
            continue
        flags = rng.choice([0, 0, 0, 0x20, 0x40, 0x60, 0x80])
        price = round(rng.uniform(99, 101), 4)
        rows.append(("T", (ts, rng.choice(["AAPL", "MSFT", "Z"]), rng.randrange(1, 900), price,
                           rng.randrange(50), flags)))  # fmt: skip
    messages: list[bytes | None] = [
        trade(*r) if kind == "T" else trade_break(*r[:5]) for kind, r in rows
    ]
    capture = pcapng(segments_of(messages, ns(DAY, "04:00"), per_segment=7)).data
    regular = [nyse_calendar().window(DAY, Session.REGULAR)]
    builder = BarBuilder(regular)
    for batch in CaptureDecoder(io.BytesIO(capture), chunk_size=4096).trades():
        builder.add(batch)
    stored = trade_table(CaptureDecoder(io.BytesIO(capture), chunk_size=4096).trades()).table
    assert "canceled" in stored["correction"].to_pylist()
    same_bars(bars_from_trades(stored, IEX_RULES, regular), builder.finish().to_table())


@needs_sample
def test_the_sample_days_bars_from_its_trades_are_its_bars() -> None:
    day = dt.date(2018, 1, 27)  # IEX's test session, on a Saturday: its hours as a weekday's
    regular = [
        SessionWindow(
            day,
            int(dt.datetime(2018, 1, 27, 14, 30, tzinfo=dt.UTC).timestamp()) * 10**9,
            int(dt.datetime(2018, 1, 27, 21, 0, tzinfo=dt.UTC).timestamp()) * 10**9,
        )
    ]
    builder = BarBuilder(regular)
    for batch in CaptureDecoder(SAMPLE).trades():
        builder.add(batch)
    stored = trade_table(CaptureDecoder(SAMPLE).trades()).table
    bars = bars_from_trades(stored, IEX_RULES, regular)
    assert pc.sum(bars["volume"]).as_py() == 55_296_562
    same_bars(bars, builder.finish().to_table())


@needs_sample
def test_the_provider_serves_the_sample_days_every_trade_and_quote_from_one_decode(
    tmp_path: Path,
) -> None:
    from marketpipe.model.request import FetchRequest
    from marketpipe.model.values import Symbol, Timeframe
    from marketpipe_iex.provider import IexHistProvider

    day = dt.date(2018, 1, 27)  # IEX's Saturday test day: no session, so the whole day
    whole = SessionWindow(day, ns(day, "00:00"), ns(day + dt.timedelta(days=1), "00:00"))
    provider = IexHistProvider(source=str(SAMPLE), cache_dir=str(tmp_path))
    decoded = list(CaptureDecoder(SAMPLE).trades_and_quotes())
    every = quote_table(q for _, q in decoded)
    names = set(every.table["symbol"].to_pylist())
    names |= set(trade_table(b for b, _ in decoded).table["symbol"].to_pylist())
    symbols = tuple(Symbol(s) for s in sorted(names))

    def fetch(kind: Timeframe) -> pa.Table:
        request = FetchRequest(
            symbols=symbols, windows=(whole,), timeframe=kind, session=Session.EXTENDED
        )
        return pa.Table.from_batches(list(provider.fetch(request)))

    trades = fetch(Timeframe.TRADES)
    assert trades.num_rows == 21_672 and pc.sum(trades["size"]).as_py() == 55_296_562
    quotes = fetch(Timeframe.QUOTES)
    assert quotes.num_rows + every.zero == 41_959 and every.zero > 0  # a zero quote: none
    # The cache keeps runs sorted by symbol, each symbol's quotes in the capture's order.
    assert quotes.equals(every.table.sort_by("symbol"))
    notes = provider.take_notes()
    assert any(f"{every.zero:,} zero quote(s)" in n for n in notes), notes
    # One decode wrote both kinds; the bars of the same pass are kept beside them.
    assert sorted(p.name.split(".", 1)[1] for p in (tmp_path / "bars").glob("*.parquet")) == [
        "bars.parquet",
        "quotes.parquet",
        "trades.parquet",
    ]


def test_the_cache_keeps_runs_sorted_by_symbol_and_a_symbol_reads_in_stream_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq
    from marketpipe_iex import tick_cache

    monkeypatch.setattr(tick_cache, "RUN_ROWS", 60)
    monkeypatch.setattr(tick_cache, "GROUP_ROWS", 16)
    rng = random.Random(3)
    at = ns(dt.date(2024, 3, 4), "10:00")
    names = ["AAPL", "IBM", "MSFT", "ZVZZT"]
    stream = [trade(at + i, rng.choice(names), 100, 10.0 + i / 100, i + 1) for i in range(400)]
    capture = pcapng(segments_of(stream, at, per_segment=5)).data
    trades, quotes = tick_cache.tick_files(tmp_path / "day.bars.parquet")
    writer = tick_cache.TickWriter(trades, quotes)
    for batch, updates in CaptureDecoder(io.BytesIO(capture)).trades_and_quotes():
        writer.add(batch, updates)
    writer.finish()
    meta = pq.ParquetFile(trades).metadata
    spans = [meta.row_group(i).column(0).statistics for i in range(meta.num_row_groups)]
    assert meta.num_row_groups > 7 and any(s.min == s.max for s in spans)  # narrow groups
    everything = trade_table(CaptureDecoder(io.BytesIO(capture)).trades()).table
    got = tick_cache.read_trades(trades, ["IBM"], 0, 2**62).table
    want = everything.filter(pc.equal(everything["symbol"], "IBM"))
    assert got["id"].to_pylist() == want["id"].to_pylist() and got.num_rows > 50


def test_breaks_stamped_inside_and_outside_a_span_both_cancel_their_trades(
    tmp_path: Path,
) -> None:
    # A span of the regular session: the 16:05 break of a 15:59 trade is stamped outside it,
    # the 10:01 break of a 10:00 trade inside; neither cancellation may undo the other.
    from marketpipe_iex import tick_cache

    stream = [
        trade(ns(DAY, "10:00"), "AAPL", 100, 190.0, 1),
        trade(ns(DAY, "10:00", 30), "AAPL", 100, 190.1, 2),
        trade_break(ns(DAY, "10:01"), "AAPL", 100, 190.0, 1),
        trade(ns(DAY, "15:59"), "AAPL", 200, 191.0, 3),
        trade_break(ns(DAY, "16:05"), "AAPL", 200, 191.0, 3),
    ]
    capture = pcapng(segments_of(stream, ns(DAY, "04:00"), per_segment=2)).data
    trades, quotes = tick_cache.tick_files(tmp_path / "day.bars.parquet")
    writer = tick_cache.TickWriter(trades, quotes)
    for batch, updates in CaptureDecoder(io.BytesIO(capture)).trades_and_quotes():
        writer.add(batch, updates)
    writer.finish()
    got = tick_cache.read_trades(trades, ["AAPL"], ns(DAY, "09:30"), ns(DAY, "16:00"))
    rows = got.table.select(["id", "correction"]).to_pylist()
    assert {r["id"]: r["correction"] for r in rows} == {
        "1": "canceled",
        "2": "regular",
        "3": "canceled",
    }
    assert got.unmatched == 0
