"""Alpaca trades and quotes through the CLI against FakeAlpacaServer (real sockets on
127.0.0.1): pages followed to an empty tail, a canceled and a corrected trade, crossed quotes
counted, round lots converted, the session kept; and the page decoder on hostile bodies."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from marketpipe.fetch import ClientConfig, MalformedResponseError
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Session, Timeframe
from marketpipe_alpaca.fake_ticks import tick_rows
from marketpipe_alpaca.testing import FakeAlpacaServer
from marketpipe_alpaca.ticks import AlpacaTickClient
from test_against_local_server import KEY, SECRET, mp

DAY = dt.date(2024, 3, 4)
DAYS = ("--start", "2024-03-04", "--end", "2024-03-05")


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(
        KEY,
        SECRET,
        canceled_every=97,
        corrected_every=89,
        crossed_every=101,
        empty_tail=True,
        page_cap=1000,
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def _isolated(fresh_plugins: None) -> None:
    """Each test loads the installed plugins afresh (MarketPipe's pytest plugin)."""


def served(server: FakeAlpacaServer, kind: str, symbols: list[str], session: Session) -> list:
    """What the server holds for the days asked, inside the session, as Python objects."""
    out = []
    for day in (DAY, DAY + dt.timedelta(days=1)):
        window = nyse_calendar().window(day, session)
        for symbol in symbols:
            for row in tick_rows(server, kind, symbol, day):
                item = json.loads(row)
                stamp = pa.scalar(item["t"].replace("Z", "")).cast(pa.timestamp("ns"))
                if window.start_ns <= stamp.value < window.end_ns:
                    out.append((symbol, item))
    return out


def test_trades_follow_every_page_and_keep_cancels_and_corrections(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    out = mp("ingest", "--provider", "alpaca", "--symbols", "AAPL,MSFT", *DAYS, "--kind",
             "trades", "--data-dir", str(data), "--json", server=server)  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    want = served(server, "trades", ["AAPL", "MSFT"], Session.REGULAR)
    assert summary["state"] == "COMPLETED" and summary["bars"] == len(want) > 5_000
    # 1,000 a page: each day's query (both symbols) takes several, then an empty tail.
    assert server.stats["trades_pages"] == sum(
        -(-len([1 for _, t in want if t["t"].startswith(d)]) // 1000) + 1
        for d in ("2024-03-04", "2024-03-05")
    )
    stored = duckdb.sql(
        f"SELECT symbol, id, price, size, correction, exchange, tape, conditions, timestamp "
        f"FROM read_parquet('{data}/trades/**/*.parquet', hive_partitioning=true) "
        "WHERE provider = 'alpaca' AND feed = 'iex' AND adjustment = 'raw'"
    ).fetchall()
    # Ids are unique within a symbol's day.
    by_id = {(r[0], r[8].astimezone(dt.UTC).date().isoformat(), r[1]): r for r in stored}
    assert len(stored) == len(want)
    for symbol, item in want:
        row = by_id[(symbol, item["t"][:10], str(item["i"]))]
        correction = {"canceled": "canceled", "corrected": "corrected"}.get(item.get("u"))
        assert row[2:8] == (item["p"], float(item["s"]), correction or "regular", "V", "C", ["@"])
    assert {r[4] for r in stored} == {"regular", "canceled", "corrected"}
    # Nanoseconds survive the page decoder.
    nanos = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{data}/trades/**/*.parquet') "
        "WHERE epoch_ns(timestamp) % 1000 = 789"
    ).fetchall()[0][0]
    assert nanos == len(want) // 4


def test_quotes_count_crossed_ones_and_convert_round_lots(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    out = mp("ingest", "--provider", "alpaca", "--symbols", "AAPL", *DAYS, "--kind", "quotes",
             "-o", "quote_sizes=lots", "--data-dir", str(data), "--json", server=server)  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    want = served(server, "quotes", ["AAPL"], Session.REGULAR)
    crossed = sum(1 for _, q in want if q["bp"] > q["ap"])
    assert summary["bars"] == len(want) and summary["rejected_rows"] == 0 and crossed > 0
    assert f"{crossed:,} crossed quotes (bid above ask), kept" in summary["notes"]
    assert any("round lots: converted to shares" in n for n in summary["notes"])
    sizes = duckdb.sql(
        f"SELECT DISTINCT bid_size, ask_size FROM read_parquet('{data}/quotes/**/*.parquet')"
    ).fetchall()
    assert sizes == [(100.0, 200.0)]


def client(kind: Timeframe) -> AlpacaTickClient:
    return AlpacaTickClient(
        ClientConfig(base_url="https://data.example.test", api_key=KEY, api_secret=SECRET),
        kind=kind,
    )


def test_the_page_decoder_reads_empty_answers_and_refuses_wrong_shapes() -> None:
    trades = client(Timeframe.TRADES)
    for body in (b'{"trades":{},"next_page_token":null}', b'{"trades":null}', b"{}"):
        table, token = trades.parse_response(body, symbols=["AAPL"])
        assert table.num_rows == 0 and token is None
    table, token = trades.parse_response(
        b'{"trades":{"AAPL":[{"t":"2024-03-04T14:30:00.5Z","x":"V","p":1.5,"s":0.25,"c":[],'
        b'"i":7,"z":"C","u":"incorrect"},{"t":"2024-03-04T14:30:01Z","p":2,"s":1,"i":8,'
        b'"u":"revised"}]},"next_page_token":"abc"}',
        symbols=["AAPL", "MSFT"],
    )
    assert token == "abc" and table["size"].to_pylist() == [0.25, 1.0]  # fractional kept
    assert table["correction"].to_pylist() == ["canceled", "revised"]  # unknown: as sent
    for hostile in (b'{"trades":{"AAPL":[{"p":"cheap"}]}}', b'{"trades":{"AAPL":7}}'):
        with pytest.raises(MalformedResponseError, match="does not decode"):
            trades.parse_response(hostile, symbols=["AAPL"])
    quotes = client(Timeframe.QUOTES)
    table, _ = quotes.parse_response(
        b'{"quotes":{"AAPL":[{"t":"2024-03-04T14:30:00Z","bx":"V","bp":0,"bs":0,"ax":"V",'
        b'"ap":10.5,"as":3}]}}',
        symbols=["AAPL"],
    )
    row = table.to_pylist()[0]
    assert (row["bid_price"], row["bid_size"], row["ask_size"]) == (None, None, 3.0)
