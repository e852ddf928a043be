"""Alpaca provider benchmarks against the local FakeAlpacaServer (run in its own process).

    python bench/bench_alpaca.py [--symbols 12] [--start 2024-01-02] [--end 2024-08-30]
    python bench/bench_alpaca.py --pacing [--rate 20] [--months 10]

1. Throughput: extended-hours one-minute bars, rate limit off. MarketPipe (`mp ingest`) against
   what a user would otherwise write: alpaca-py's StockHistoricalDataClient with url_override
   pointed at the same server, `.df`, then pandas `to_parquet` per symbol and day. Same run, same
   server; wall and CPU time of each client process (the server's CPU is not counted).
2. Pacing (--pacing): the server enforces N requests per minute; a job needing many times N
   requests should finish within 10% of the bound that N implies and draw no 429.

Needs alpaca-py for part 1 (pip install alpaca-py). Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

KEY, SECRET = "bench-key", "bench-secret"

ALPACA_PY = textwrap.dedent("""
    import datetime as dt, sys
    from pathlib import Path
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    url, out, start, end, *symbols = sys.argv[1:]
    client = StockHistoricalDataClient("{key}", "{secret}", url_override=url)
    request = StockBarsRequest(
        symbol_or_symbols=symbols, timeframe=TimeFrame.Minute, feed=DataFeed.IEX,
        start=dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc),
        end=dt.datetime.fromisoformat(end).replace(tzinfo=dt.timezone.utc)
        + dt.timedelta(days=1),
    )
    df = client.get_stock_bars(request).df.reset_index()
    df["day"] = df["timestamp"].dt.tz_convert("America/New_York").dt.date
    rows = 0
    for (symbol, day), part in df.groupby(["symbol", "day"]):
        folder = Path(out) / symbol
        folder.mkdir(parents=True, exist_ok=True)
        part.drop(columns=["day"]).to_parquet(folder / f"{{day}}.parquet")
        rows += len(part)
    print(rows)
""").format(key=KEY, secret=SECRET)


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketpipe_alpaca.testing",
            "--key-id",
            KEY,
            "--secret-key",
            SECRET,
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def server_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_stats") as answer:
        return json.loads(answer.read())


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, float, float]:
    """stdout, wall seconds and CPU seconds (user + system) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out.stdout, wall, cpu


def mp_env(url: str, rate: int) -> dict[str, str]:
    return {
        **os.environ,
        "APCA_API_KEY_ID": KEY,
        "APCA_API_SECRET_KEY": SECRET,
        "MARKETPIPE_ALPACA_BASE_URL": url,
        "MARKETPIPE_ALPACA_RATE_LIMIT": str(rate),
    }


def throughput(args: argparse.Namespace) -> None:
    symbols = [f"S{i:02d}" for i in range(args.symbols)]
    mp = str(Path(sys.executable).with_name("mp"))
    server, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as work:

            def ingest(folder: str) -> list[str]:
                return [
                    mp,
                    "ingest",
                    "--provider",
                    "alpaca",
                    "--symbols",
                    ",".join(symbols),
                    "--start",
                    args.start,
                    "--end",
                    args.end,
                    "--session",
                    "extended",
                    "--concurrency",
                    "4",
                    "--data-dir",
                    f"{work}/{folder}",
                    "--json",
                ]

            # Warm the server's cache of generated bars so neither client pays for it.
            timed(ingest("warm"), env=mp_env(url, 100_000))
            runs = []
            for i in range(args.repeat):  # the median of a few runs: shared machines are noisy
                out, wall, cpu = timed(ingest(f"mp{i}"), env=mp_env(url, 100_000))
                runs.append((wall, cpu))
            mp_wall = statistics.median(r[0] for r in runs)
            mp_cpu = statistics.median(r[1] for r in runs)
            bars = json.loads(out)["bars"]
            out, py_wall, py_cpu = timed(
                [
                    sys.executable,
                    "-c",
                    ALPACA_PY,
                    url,
                    f"{work}/alpaca-py",
                    args.start,
                    args.end,
                    *symbols,
                ]
            )
            py_rows = int(out.strip().splitlines()[-1])
    finally:
        server.terminate()
    print(
        json.dumps(
            {
                "bars": bars,
                "alpaca_py_rows": py_rows,
                "marketpipe": {"wall": mp_wall, "cpu": mp_cpu},
                "alpaca_py": {"wall": py_wall, "cpu": py_cpu},
            },
            indent=2,
        )
    )
    print(
        f"\nMarketPipe: {bars:,} bars in {mp_wall:.2f} s wall, {mp_cpu:.2f} s CPU "
        f"({bars / mp_wall:,.0f} bars/s)"
    )
    print(
        f"alpaca-py:  {py_rows:,} bars in {py_wall:.2f} s wall, {py_cpu:.2f} s CPU "
        f"({py_rows / py_wall:,.0f} bars/s)"
    )
    print(
        f"MarketPipe is {py_wall / mp_wall:.1f}x faster in wall time, "
        f"{py_cpu / mp_cpu:.1f}x in CPU time (target: 10x)"
    )


def pacing(args: argparse.Namespace) -> None:
    server, url = start_server("--rate-limit", str(args.rate), "--window", "60")
    mp = str(Path(sys.executable).with_name("mp"))
    try:
        with tempfile.TemporaryDirectory() as work:
            symbols = ",".join(f"S{i:02d}" for i in range(args.symbols))
            end = f"2024-{args.months:02d}-28"
            _, wall, _ = timed(
                [
                    mp,
                    "ingest",
                    "--provider",
                    "alpaca",
                    "--symbols",
                    symbols,
                    "--start",
                    "2024-01-02",
                    "--end",
                    end,
                    "--batch-size",
                    "9000",
                    "--concurrency",
                    "4",
                    "--data-dir",
                    work,
                    "--json",
                ],
                env=mp_env(url, args.rate),
            )
            stats = server_stats(url)
    finally:
        server.terminate()
    requests = stats.get("requests", 0)
    # A sliding window lets N requests go at once, then N more each window.
    bound = max(0, requests - args.rate) / args.rate * 60
    print(
        json.dumps(
            {
                "requests": requests,
                "rate_per_minute": args.rate,
                "wall": wall,
                "bound": bound,
                "429": stats.get("429_limit", 0),
            },
            indent=2,
        )
    )
    print(
        f"\n{requests} requests at {args.rate}/min: {wall:.1f} s against a bound of "
        f"{bound:.1f} s ({(wall / bound - 1) * 100 if bound else 0:+.1f}%), "
        f"{stats.get('429_limit', 0)} responses 429"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=12)
    parser.add_argument("--start", default="2024-01-02")
    parser.add_argument("--end", default="2024-08-30")
    parser.add_argument("--repeat", type=int, default=3, help="MarketPipe runs (median)")
    parser.add_argument("--pacing", action="store_true")
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--months", type=int, default=10)
    args = parser.parse_args()
    if args.pacing:
        args.symbols = 8 if args.symbols == 12 else args.symbols  # 8 x 10 months: 80 units
        pacing(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
