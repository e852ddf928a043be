"""Tick benchmarks: each against its baseline in the same run, as a ratio.

    python bench/bench_ticks.py iex [--copies 50] [--repeat 3]
    python bench/bench_ticks.py read [--repeat 7]
    python bench/bench_ticks.py alpaca [--symbols 20] [--days 10]

1. ``iex``: IEX capture to committed trades, against `gzip -dc` of the capture. The capture is
   IEX's real sample day repeated ``--copies`` times with rising times (bench_iex.build). A child
   process does what a tick job does, in one unit: one pass over the capture decoding bars,
   trades and quotes (the trades and quotes written to the cache as they come), the trades read
   back, validated and committed through the Parquet sink. Also: bytes a trade on disk, for the
   expanded capture and for the sample day alone (the copies repeat prices, which flatters any
   codec), against the same trades as gzipped CSV.
2. ``read``: one symbol-day of a million trades from a month file of nine million (20 symbols,
   21 days), ``marketpipe.read(kind="trades")`` against DuckDB reading the same rows from the same
   files, best of ``--repeat``, the two taken in turn.
3. ``alpaca``: client CPU a trade, MarketPipe's job (``run_ingest``, trades, extended session)
   against alpaca-py's ``get_stock_trades(...).df`` plus pandas ``to_parquet`` per symbol-day,
   both against the local server in its own process; CPU counted inside each client process
   around the work only (imports and interpreter start left out of both), for a week and for
   four: what each trade more costs is the difference over the trades more (a job's fixed
   costs, its calendar, catalog and corporate actions, left out of it).

Not a test: the figures go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


# -- 1. IEX capture to committed trades -----------------------------------------------------------


def iex_child(path: str, out: str) -> None:
    import datetime as dt

    from marketpipe.run.process import tune_for_jobs

    tune_for_jobs()  # as mp does first, before numpy loads
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    from marketpipe.model.calendar import SessionWindow, ny_midnight_ns
    from marketpipe.model.schema import encode_symbols
    from marketpipe.model.values import Session, Timeframe
    from marketpipe.plugins.sink import CommitRequest
    from marketpipe.plugins.validator import ValidationContext
    from marketpipe.storage.parquet_sink import ParquetSink
    from marketpipe.validate.ticks import TradeValidator
    from marketpipe_iex.bars import BarBuilder
    from marketpipe_iex.decode import CaptureDecoder
    from marketpipe_iex.tick_cache import TickWriter, read_trades, tick_files

    started = time.perf_counter()
    cpu = time.process_time()
    decoder = CaptureDecoder(path)
    trades_file, quotes_file = tick_files(Path(out) / "cache" / "capture.bars.parquet")
    writer, builder = TickWriter(trades_file, quotes_file), BarBuilder()
    for batch, quotes in decoder.trades_and_quotes():
        builder.add(batch)
        writer.add(batch, quotes)
    builder.finish()
    writer.finish()
    decoded = time.perf_counter() - started
    import pyarrow.parquet as pq

    # As a job's units: each within one month (the planner's rule), its partitions every
    # symbol of the capture on every day of that month the capture holds.
    stamps = pq.read_table(trades_file, columns=["symbol", "timestamp"])
    symbols = pc.unique(stamps["symbol"]).to_pylist()
    bounds = pc.min_max(stamps["timestamp"].cast(pa.int64())).as_py()
    first, last = (
        dt.datetime.fromtimestamp(bounds[k] / 1e9, dt.UTC).date() - dt.timedelta(days=1)
        for k in ("min", "max")
    )
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 2)]
    months: dict[tuple[int, int], list[dt.date]] = {}
    for d in days:
        months.setdefault((d.year, d.month), []).append(d)
    sink = ParquetSink(Path(out) / "data", durable=False)
    read_back = validating = committing = 0.0
    valid_parts, rejected = [], 0
    for month_days in months.values():
        windows = tuple(
            SessionWindow(d, ny_midnight_ns(d), ny_midnight_ns(d + dt.timedelta(days=1)))
            for d in month_days
        )
        t0 = time.perf_counter()
        found = read_trades(trades_file, symbols, windows[0].start_ns, windows[-1].end_ns)
        table = encode_symbols(found.table)
        t1 = time.perf_counter()
        context = ValidationContext(
            symbols=frozenset(symbols), windows=windows, timeframe=Timeframe.TRADES
        )
        result = TradeValidator().validate(table, context)
        t2 = time.perf_counter()
        sink.commit(
            CommitRequest(
                table=result.valid,
                coverage={s: tuple(month_days) for s in symbols},
                provider="iex",
                feed="tops",
                timeframe=Timeframe.TRADES,
                job_id="bench",
                session=Session.EXTENDED,
            )
        )
        t3 = time.perf_counter()
        read_back, validating, committing = (
            read_back + t1 - t0,
            validating + t2 - t1,
            committing + t3 - t2,
        )
        valid_parts.append(result.valid)
        rejected += result.rejected.num_rows
    valid = pa.concat_tables(valid_parts)
    sink.close()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    files = list((Path(out) / "data" / "trades").rglob("*.parquet"))
    stored = sum(f.stat().st_size for f in files)
    plain = io.BytesIO()
    from marketpipe.model.schema import flat_lists

    pacsv.write_csv(flat_lists(valid.cast(valid.schema)), plain)
    csv_gz = len(gzip.compress(plain.getvalue(), compresslevel=6))
    print(
        json.dumps(
            {
                "seconds": seconds,
                "decode_seconds": decoded,
                "phases": {
                    "decode": round(decoded, 3),
                    "read back": round(read_back, 3),
                    "validate": round(validating, 3),
                    "commit": round(committing, 3),
                },
                "cpu": cpu,
                "trades": valid.num_rows,
                "rejected": rejected,
                "stored_bytes": stored,
                "csv_gz_bytes": csv_gz,
                "files": len(files),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "distinct_prices": int(np.unique(valid["price"].to_numpy()).size),
            }
        )
    )


def run_iex_child(capture: Path, work: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "iex-child", str(capture), str(work)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def iex(args: argparse.Namespace) -> None:
    from bench_iex import DEFAULT_SAMPLE, build, gunzip_seconds

    with tempfile.TemporaryDirectory(prefix="bench-ticks-") as tmp:
        big = Path(tmp) / "big.pcap.gz"
        size = build(DEFAULT_SAMPLE, args.copies, big)
        print(f"capture: {size / 1e6:,.0f} MB, {big.stat().st_size / 1e6:,.0f} MB gzipped")
        run_iex_child(big, Path(tmp) / "warm")
        gz, ours = [], []
        last: dict = {}
        for i in range(args.repeat):
            gz.append(gunzip_seconds(big))
            last = run_iex_child(big, Path(tmp) / f"run{i}")
            ours.append(last["seconds"])
        one = run_iex_child(DEFAULT_SAMPLE, Path(tmp) / "sample")
    g, o = statistics.median(gz), statistics.median(ours)
    print(f"gzip -dc > /dev/null           {g:6.2f} s")
    print(
        f"capture to committed trades    {o:6.2f} s  ratio {o / g:.2f}x  ({last['trades']:,} "
        f"trades, {last['trades'] / o:,.0f} trades/s; decode pass {last['decode_seconds']:.2f} s; "
        f"CPU {last['cpu']:.2f} s; peak RSS {last['peak_rss_mb']:,.0f} MB)"
    )
    for name, run in (("expanded capture", last), ("sample day alone", one)):
        print(
            f"{name}: {run['stored_bytes'] / run['trades']:.1f} bytes a trade stored, "
            f"{run['csv_gz_bytes'] / run['trades']:.1f} as gzipped CSV ({run['trades']:,} trades)"
        )
    print(f"runs: gzip {[round(x, 2) for x in gz]}, ours {[round(x, 2) for x in ours]}")
    print(f"phases of the last run (s): {last['phases']}")


# -- 2. reading one symbol-day ---------------------------------------------------------------------


def build_month(root: Path) -> tuple[str, str]:
    """Twenty symbols' trades for the 21 sessions of March 2024 in one month file; ``BIG`` has a
    million trades on 2024-03-14, every other symbol-day 20,000. Returns (symbol, day)."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.model.ticks import REGULAR, TRADE_SCHEMA
    from marketpipe.model.values import Session, Timeframe, TimeRange
    from marketpipe.plugins.sink import CommitRequest
    from marketpipe.storage.parquet_sink import ParquetSink

    rng = np.random.default_rng(7)
    calendar = nyse_calendar()
    sessions = calendar.sessions(TimeRange(dt.date(2024, 3, 1), dt.date(2024, 3, 31)))
    symbols = ["BIG"] + [f"S{i:02d}" for i in range(19)]
    big_day = dt.date(2024, 3, 14)
    parts, coverage = [], {}
    for symbol in sorted(symbols):
        coverage[symbol] = tuple(sessions)
        for day in sessions:
            n = 1_000_000 if (symbol, day) == ("BIG", big_day) else 20_000
            window = calendar.window(day, Session.REGULAR)
            stamp = np.sort(rng.integers(window.start_ns, window.end_ns, n))
            price = np.round(100 + np.cumsum(rng.normal(0, 0.01, n)), 2)
            parts.append(
                pa.table(
                    {
                        "symbol": pa.array([symbol] * n),
                        "timestamp": pa.array(stamp, pa.timestamp("ns", tz="UTC")),
                        "sip_timestamp": pa.array(stamp + 20_000, pa.timestamp("ns", tz="UTC")),
                        "price": price,
                        "size": rng.integers(1, 500, n).astype(np.float64),
                        "exchange": pa.array(rng.choice(list("VPQKZN"), n)),
                        "id": pa.array(np.arange(n).astype(str)),
                        "conditions": pa.array([[]] * n, pa.list_(pa.string())),
                        "tape": pa.array(["C"] * n),
                        "correction": pa.array([REGULAR] * n),
                        "sequence": pa.array(np.arange(n), pa.int64()),
                    },
                    schema=TRADE_SCHEMA,
                )
            )
    sink = ParquetSink(root, durable=False)
    sink.commit(
        CommitRequest(
            table=pa.concat_tables(parts),
            coverage=coverage,
            provider="bench",
            feed="sim",
            timeframe=Timeframe.TRADES,
            job_id="bench",
        )
    )
    sink.close()
    return "BIG", big_day.isoformat()


def read(args: argparse.Namespace) -> None:
    import duckdb
    import marketpipe
    import pyarrow as pa
    from bench_read import best

    with tempfile.TemporaryDirectory(prefix="bench-ticks-read-") as tmp:
        root = Path(tmp) / "data"
        symbol, day = build_month(root)
        files = sorted(str(p) for p in (root / "trades").rglob("*.parquet"))
        glob = f"{root}/trades/provider=bench/feed=sim/adjustment=raw/*/*.parquet"
        query = (
            f"SELECT * FROM read_parquet('{glob}') WHERE symbol = '{symbol}' "
            f"AND timestamp >= TIMESTAMPTZ '{day} 00:00:00-04' "
            f"AND timestamp < TIMESTAMPTZ '{day} 00:00:00-04' + INTERVAL 1 DAY"
        )
        connection = duckdb.connect()

        def ours() -> pa.Table:
            return marketpipe.read(
                root, provider="bench", symbols=[symbol], start=day, end=day, kind="trades"
            )

        def theirs() -> pa.Table:
            return connection.sql(query).to_arrow_table()

        rows = ours().num_rows
        assert rows == theirs().num_rows == 1_000_000, rows
        times = best(args.repeat, {"marketpipe": ours, "duckdb": theirs})
        size = sum(Path(f).stat().st_size for f in files)
    m, d = times["marketpipe"][0], times["duckdb"][0]
    print(f"{len(files)} file(s), {size / 1e6:,.0f} MB, 9.0M trades; one symbol-day: {rows:,}")
    print(f"marketpipe.read(kind='trades') {m:.3f} s   DuckDB {d:.3f} s   ratio {m / d:.2f}x")


# -- 3. Alpaca trades: client CPU a trade ---------------------------------------------------------

ALPACA_PY = textwrap.dedent("""
    import datetime as dt, json, sys, time
    from pathlib import Path
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockTradesRequest

    url, out, start, end, *symbols = sys.argv[1:]
    cpu, wall = time.process_time(), time.perf_counter()
    client = StockHistoricalDataClient("bench-key", "bench-secret", url_override=url)
    request = StockTradesRequest(
        symbol_or_symbols=symbols, feed=DataFeed.IEX,
        start=dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc),
        end=dt.datetime.fromisoformat(end).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1),
    )
    df = client.get_stock_trades(request).df.reset_index()
    df["day"] = df["timestamp"].dt.tz_convert("America/New_York").dt.date
    rows = 0
    for (symbol, day), part in df.groupby(["symbol", "day"]):
        folder = Path(out) / symbol
        folder.mkdir(parents=True, exist_ok=True)
        part.drop(columns=["day"]).to_parquet(folder / f"{day}.parquet")
        rows += len(part)
    print(json.dumps({"rows": rows, "cpu": time.process_time() - cpu,
                      "wall": time.perf_counter() - wall}))
""")

MARKETPIPE = textwrap.dedent("""
    import asyncio, json, sys, time
    from pathlib import Path
    from marketpipe.run.process import tune_for_jobs

    # What mp does first, before numpy loads (its OpenBLAS then starts no spinning threads): the
    # job as `mp ingest` runs it.
    tune_for_jobs()
    from marketpipe.model.values import Session, Symbol, Timeframe, TimeRange
    from marketpipe.run.pipeline import IngestRequest, run_ingest
    url, out, start, end, *symbols = sys.argv[1:]
    cpu, wall = time.process_time(), time.perf_counter()
    summary = asyncio.run(run_ingest(IngestRequest(
        provider="alpaca", symbols=tuple(Symbol(s) for s in symbols),
        time_range=TimeRange(start, end), timeframe=Timeframe.TRADES,
        session=Session.EXTENDED, data_dir=Path(out),
        overrides={"base_url": url, "rate_limit": "100000"}, max_concurrency=4,
    )))
    assert summary.state.value == "COMPLETED", summary
    print(json.dumps({"rows": summary.bars, "cpu": time.process_time() - cpu,
                      "wall": time.perf_counter() - wall}))
""")


def alpaca(args: argparse.Namespace) -> None:
    import os

    from bench_alpaca import KEY, SECRET, start_server

    symbols = [f"S{i:02d}" for i in range(args.symbols)]
    # A week and four: what each trade more costs is measured over 15 sessions more (over 5, the
    # CPU of two runs alike varied by about as much as the difference).
    ranges = {"week": ("2024-03-04", "2024-03-08"), "month": ("2024-03-04", "2024-03-29")}
    env = {**os.environ, "APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET,
           "MARKETPIPE_FSYNC": "0"}  # fmt: skip
    server, url = start_server()
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ticks-alpaca-") as work:

            def run(code: str, name: str, span: tuple[str, str]) -> dict:
                out = subprocess.run(
                    [sys.executable, "-c", code, url, f"{work}/{name}", *span, *symbols],
                    capture_output=True, text=True, env=env,
                )  # fmt: skip
                if out.returncode:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
                result: dict = json.loads(out.stdout.strip().splitlines()[-1])
                return result

            for span in ranges.values():  # the server generates and caches its pages once
                run(MARKETPIPE, f"warm{span[1]}", span)
            for i in range(args.repeat):
                for label, span in ranges.items():
                    for client, code in (("marketpipe", MARKETPIPE), ("alpaca-py", ALPACA_PY)):
                        got = run(code, f"{client}{label}{i}", span)
                        runs.setdefault((client, label), []).append(got)
    finally:
        server.terminate()
    for client in ("marketpipe", "alpaca-py"):
        week = min(runs[(client, "week")], key=lambda r: r["cpu"])
        month = min(runs[(client, "month")], key=lambda r: r["cpu"])
        marginal = (month["cpu"] - week["cpu"]) / (month["rows"] - week["rows"])
        print(
            f"{client:11s} {month['rows']:,} trades: CPU {month['cpu']:.2f} s "
            f"({month['cpu'] / month['rows'] * 1e6:.2f} us a trade, all in; wall "
            f"{month['wall']:.2f} s); each trade more: {marginal * 1e6:.2f} us"
        )
        runs[(client, "marginal")] = [{"cpu": marginal}]
    ours, theirs = runs[("marketpipe", "marginal")][0], runs[("alpaca-py", "marginal")][0]
    print(f"alpaca-py spends {theirs['cpu'] / ours['cpu']:.1f}x MarketPipe's CPU a trade")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "iex-child":
        iex_child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="part", required=True)
    one = sub.add_parser("iex")
    one.add_argument("--copies", type=int, default=50)
    one.add_argument("--repeat", type=int, default=3)
    two = sub.add_parser("read")
    two.add_argument("--repeat", type=int, default=7)
    three = sub.add_parser("alpaca")
    three.add_argument("--symbols", type=int, default=20)
    three.add_argument("--days", type=int, default=10)
    three.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    {"iex": iex, "read": read, "alpaca": alpaca}[args.part](args)


if __name__ == "__main__":
    main()
