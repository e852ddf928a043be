"""Trades and quotes from the flat files, through ``mp`` and the local server: each day's file
read once for every unit, every trade as the file holds it (corrections, conditions, fractional
sizes, both times), quote sizes converted from round lots, crossed quotes counted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Session
from marketpipe_massive.flatfiles import day_key
from marketpipe_massive.testing import MassiveServer, minute_bars, publish_market, trades_of
from marketpipe_massive.testing.market import CROSSED_EVERY
from massive_helpers import DAYS, ingest

RANGE = ("--start", "2024-03-04", "--end", "2024-03-08")


def regular(table: pa.Table, day: dt.date) -> pa.Table:
    window = nyse_calendar().window(day, Session.REGULAR)
    stamps = table["participant_timestamp"]
    return table.filter(
        pc.and_(pc.greater_equal(stamps, window.start_ns), pc.less(stamps, window.end_ns))
    )


def test_a_whole_markets_trades_are_stored_as_the_files_hold_them_each_file_read_once(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    summary = ingest(server, data, "--all-symbols", *RANGE, "--kind", "trades",
                     "--batch-size", "20000")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    want = pa.concat_tables([regular(trades_of(minute_bars(d)), d) for d in DAYS])
    assert summary["bars"] == want.num_rows > 0 and summary["rejected_rows"] == 0
    assert sorted(k for k in server.gets() if "trades_v1" in k) == [
        day_key("trades_v1", d) for d in DAYS
    ]  # each day's file once, whatever the units
    got = duckdb.sql(
        "SELECT symbol, epoch_ns(timestamp), epoch_ns(sip_timestamp) - epoch_ns(timestamp), "
        "price, size, exchange, id, conditions, tape, correction, sequence FROM "
        f"read_parquet('{data}/trades/**/*.parquet') ORDER BY symbol, timestamp, sequence"
    ).fetchall()
    expected = sorted(
        zip(
            want["ticker"].to_pylist(),
            want["participant_timestamp"].to_pylist(),
            want["price"].to_pylist(),
            want["size"].to_pylist(),
            want["id"].to_pylist(),
            want["conditions"].to_pylist(),
            want["correction"].to_pylist(),
            want["sequence_number"].to_pylist(),
            strict=True,
        ),
        key=lambda r: (r[0], r[1], r[7]),
    )
    corrections = {"0": "regular", "1": "canceled", "12": "corrected"}
    assert len(got) == len(expected)
    for row, (ticker, at, price, size, id_, conditions, correction, sequence) in zip(
        got, expected, strict=True
    ):
        codes = conditions.split(",") if conditions else []
        assert row == (ticker, at, 150_000, price, size, "4", id_, codes, "C",
                       corrections[correction], sequence)  # fmt: skip


def test_quotes_convert_round_lots_and_count_crossed_ones(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    summary = ingest(server, data, "--symbols", "AAPL", *RANGE, "--kind", "quotes")
    assert summary["exit"] == 0, summary["stderr"]
    sizes = duckdb.sql(
        f"SELECT DISTINCT bid_size, ask_size FROM read_parquet('{data}/quotes/**/*.parquet')"
    ).fetchall()
    assert sizes == [(100.0, 200.0)]
    notes = summary["notes"]
    assert any("round lots: converted to shares" in n for n in notes)  # type: ignore[union-attr]
    crossed = 0
    for day in DAYS:
        trades = trades_of(minute_bars(day))
        number = np.arange(1, trades.num_rows + 1)
        mine = pc.equal(trades["ticker"], "AAPL").to_numpy(zero_copy_only=False) & (
            number % CROSSED_EVERY == 0
        )
        window = nyse_calendar().window(day, Session.REGULAR)
        stamps = trades["participant_timestamp"].to_numpy() - 1
        crossed += int((mine & (stamps >= window.start_ns) & (stamps < window.end_ns)).sum())
    assert crossed > 0 and f"{crossed:,} crossed quotes (bid above ask), kept" in notes  # type: ignore[operator]


def test_fractional_trade_sizes_of_2026_files_are_kept_whole(
    server: MassiveServer, tmp_path: Path
) -> None:
    publish_market(server, DAYS[:1], drift_from=DAYS[0], ticks=True)
    data = tmp_path / "data"
    summary = ingest(server, data, "--symbols", "AAPL", "--start", "2024-03-04", "--end",
                     "2024-03-04", "--kind", "trades")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    halves = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{data}/trades/**/*.parquet') "
        "WHERE size - floor(size) = 0.5"
    ).fetchall()[0][0]
    assert halves > 0
