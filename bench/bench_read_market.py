"""One symbol's twenty years from a whole-market dataset: ``marketpipe.read`` against DuckDB
reading the same files, as a whole-market ingest writes them and after ``mp compact``.

    python bench/bench_read_market.py [--symbols 10000] [--years 20] [--repeat 5] [--keep DIR]

The dataset is day bars (``1d``) of ``--symbols`` symbols every session of ``--years`` years
(50M rows, 50M partitions at the defaults), committed a day at a time through the Parquet sink
as ``mp ingest --provider massive --all-symbols --timeframe 1d`` commits them: one file a day.
Then the same read after ``mp compact`` (one file a month, sorted by symbol). Each figure is the
best of ``--repeat`` runs in this process after a warm-up, every reader on the same files in
the page cache. Goal: at most 1.5x DuckDB. Not a test: the figures go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import marketpipe
import numpy as np
import pyarrow as pa
from bench_read import best  # the same best-of-N timing as the one-symbol-year bench
from marketpipe.ingestion import Session, Timeframe, TimeRange
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe.plugins.sink import CommitRequest
from marketpipe.storage.parquet_sink import ParquetSink


def build(root: Path, symbols: list[str], first: dt.date, last: dt.date, by_month: bool) -> int:
    """Commit every session's bars of every symbol, a day a commit (as a whole-market ingest
    does), or a month a commit (the files ``mp compact`` leaves); the rows written."""
    sink = ParquetSink(root, durable=False)
    windows = nyse_calendar().windows(TimeRange(first, last), Session.REGULAR)
    rows = 0
    if by_month:

        def month(pair: tuple[Any, pa.Table]) -> str:
            return f"{pair[0].day:%Y-%m}"

        for i, (key, pairs) in enumerate(itertools.groupby(days_of(symbols, windows), month)):
            held = list(pairs)
            table = pa.concat_tables([t for _, t in held]).sort_by(
                [("symbol", "ascending"), ("timestamp", "ascending")]
            )
            commit(sink, table, {s: tuple(w.day for w, _ in held) for s in symbols}, f"m{i:04d}")
            rows += table.num_rows
            print(f"  {key}: {rows:,} rows", file=sys.stderr)
        sink.close()
        return rows
    for i, (window, table) in enumerate(days_of(symbols, windows)):
        commit(sink, table, {s: (window.day,) for s in symbols}, f"day{i:05d}")
        rows += table.num_rows
        if i % 250 == 0:
            print(f"  {window.day}: {rows:,} rows", file=sys.stderr)
    sink.close()
    return rows


def commit(sink: ParquetSink, table: pa.Table, coverage: dict, job: str) -> None:
    sink.commit(
        CommitRequest(
            table=table,
            coverage=coverage,
            provider="massive",
            feed="sip",
            timeframe=Timeframe.D1,
            job_id=job,
        )
    )


def days_of(symbols: list[str], windows: list) -> Iterator[tuple[Any, pa.Table]]:
    """Each session's day bar of every symbol, a random walk."""
    rng = np.random.default_rng(7)
    names = pa.array(symbols, pa.string())
    price = 50 + rng.random(len(symbols)) * 100
    for window in windows:
        price *= 1 + rng.normal(0, 0.01, len(symbols))
        stamp = np.full(len(symbols), window.midnight_ns, dtype=np.int64)
        table = pa.table(
            {
                "symbol": names,
                "timestamp": pa.array(stamp).cast(pa.timestamp("ns", tz="UTC")),
                "open": price,
                "high": price * 1.01,
                "low": price * 0.99,
                "close": price,
                "volume": rng.integers(1_000, 1_000_000, len(symbols)),
                "trade_count": rng.integers(10, 10_000, len(symbols)),
                "vwap": price,
            }
        ).cast(BAR_SCHEMA)
        yield window, table


def measure(root: Path, symbol: str, first: dt.date, last: dt.date, repeat: int) -> dict:
    files = sorted(
        root.glob("bars/provider=massive/feed=sip/adjustment=raw/timeframe=1d/*/*.parquet")
    )
    glob = f"{root}/bars/provider=massive/feed=sip/adjustment=raw/timeframe=1d/*/*.parquet"
    con = duckdb.connect()

    def ours() -> pa.Table:
        return marketpipe.read(
            root, provider="massive", symbols=[symbol], start=first, end=last, timeframe="1d"
        )

    def baseline() -> pa.Table:
        # A relation's Arrow table: a DB-API result (``execute``) made an extra copy of the
        # rows (DuckDB 2 warns so).
        return con.sql(
            "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap "
            f"FROM read_parquet('{glob}') WHERE symbol = ? ORDER BY timestamp",
            params=[symbol],
        ).to_arrow_table()

    timed = best(repeat, {"ours": ours, "duckdb": baseline})
    (mine, rows), (duck, duck_rows) = timed["ours"], timed["duckdb"]
    assert rows == duck_rows, (rows, duck_rows)
    return {
        "files": len(files),
        "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
        "rows_read": rows,
        "marketpipe_s": round(mine, 4),
        "duckdb_s": round(duck, 4),
        "ratio": round(mine / duck, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--last-year", type=int, default=2023)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="reuse or keep this dataset")
    parser.add_argument(
        "--by-month", action="store_true",
        help="commit a month at a time (the compacted layout, built in far less time) and "
        "measure that layout only",
    )  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mp-bench-market-"))
    root = args.keep or work / "data"
    first = dt.date(args.last_year - args.years + 1, 1, 1)
    last = dt.date(args.last_year, 12, 31)
    symbols = [f"S{i:05d}" for i in range(args.symbols)]
    symbol = symbols[len(symbols) // 2]
    os.environ["MARKETPIPE_FSYNC"] = "0"
    try:
        out: dict[str, object] = {"symbol": symbol, "symbols": args.symbols, "years": args.years}
        if not (root / "_marketpipe").is_dir():
            began = time.perf_counter()
            out["rows"] = build(root, symbols, first, last, args.by_month)
            out["build_s"] = round(time.perf_counter() - began, 1)
        if args.by_month:
            out["compacted"] = measure(root, symbol, first, last, args.repeat)
            print(json.dumps(out, indent=2))
            return
        out["as_ingested"] = measure(root, symbol, first, last, args.repeat)
        print(json.dumps(out), file=sys.stderr)
        began = time.perf_counter()
        mp = Path(sys.executable).with_name("mp")
        done = subprocess.run(
            [str(mp), "compact", "--data-dir", str(root), "--json"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        out["compact_s"] = round(time.perf_counter() - began, 1)
        out["compacted"] = measure(root, symbol, first, last, args.repeat)
        print(json.dumps(out, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
