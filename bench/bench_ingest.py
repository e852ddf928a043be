"""End-to-end ingest benchmark: Fake provider to committed Parquet, then DuckDB queries.

    python bench/bench_ingest.py [--symbols 100] [--start 2023-01-01] [--end 2023-12-31]

Runs each job in a fresh child process (so peak RSS is that job's own): the large job, and a job
ten times smaller (a tenth of the symbols). Then times a DuckDB query (per symbol: count, first and
last bar, average close) over the dataset against the same rows copied into one Parquet file, in
the same run, and prints the ratios. Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERY = """
SELECT symbol, count(*) AS bars, min(timestamp) AS first_bar, max(timestamp) AS last_bar,
       avg(close) AS avg_close
FROM {source} GROUP BY symbol ORDER BY symbol
"""


def symbols(n: int) -> str:
    return ",".join(f"S{i:03d}" for i in range(n))


def child(args: argparse.Namespace) -> None:
    """Run one job in this process and print its figures as one JSON line (``--data-dir`` may
    be an ``s3://`` URL, ``--sink`` any installed sink: bench_sinks.py runs it so)."""
    from marketpipe.run.process import tune_for_jobs

    tune_for_jobs()  # as mp does first, before numpy loads
    from marketpipe.ingestion import Session, Symbol, Timeframe, TimeRange
    from marketpipe.run.pipeline import IngestRequest, run_ingest
    from marketpipe.storage.location import local_root

    root = local_root(args.data_dir)
    request = IngestRequest(
        provider="fake",
        symbols=Symbol.parse_list(symbols(args.symbols)),
        time_range=TimeRange(args.start, args.end),
        timeframe=Timeframe.M1,
        session=Session.REGULAR,
        data_dir=root,
        max_concurrency=args.concurrency,
        batch_size=args.batch_size,
        sink=args.sink,
    )
    started = time.perf_counter()
    summary = asyncio.run(run_ingest(request))
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    units = 0
    for log in (root / "_marketpipe" / "events").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "IngestionJobPlanned":
                units = event["units"]
    print(
        json.dumps(
            {
                "state": summary.state.value,
                "bars": summary.bars,
                "seconds": elapsed,
                "job_seconds": summary.elapsed_seconds,
                "peak_rss_mib": peak_kib / 1024,
                "units": units,
            }
        )
    )


def run_job(n_symbols: int, args: argparse.Namespace, data_dir: Path) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--symbols",
        str(n_symbols),
        "--start",
        args.start,
        "--end",
        args.end,
        "--data-dir",
        str(data_dir),
        "--concurrency",
        str(args.concurrency),
        "--batch-size",
        str(args.batch_size),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["state"] == "COMPLETED", result
    result["bars_per_second"] = result["bars"] / result["seconds"]
    return result


def time_query(source: str, repeats: int = 7) -> float:
    import duckdb

    con = duckdb.connect()
    con.sql(QUERY.format(source=source)).fetchall()  # warm the file cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        con.sql(QUERY.format(source=source)).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2023-12-31")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100_000, help="bars per unit of work")
    parser.add_argument("--data-dir")
    parser.add_argument("--sink")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import duckdb

    work = Path(tempfile.mkdtemp(prefix="mp-bench-"))
    try:
        large = run_job(args.symbols, args, work / "large")
        small = run_job(max(1, args.symbols // 10), args, work / "small")
        dataset = f"read_parquet('{work / 'large'}/**/*.parquet', hive_partitioning=true)"
        single = work / "single.parquet"
        duckdb.sql(
            f"COPY (SELECT symbol, timestamp, open, high, low, close, volume, trade_count,"
            f" vwap FROM {dataset}) TO '{single}' (FORMAT parquet, COMPRESSION zstd)"
        )
        files = len(list((work / "large").rglob("*.parquet")))
        t_dataset = time_query(dataset)
        t_single = time_query(f"read_parquet('{single}')")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "large": large,
        "small": small,
        "rss_ratio_large_to_small": large["peak_rss_mib"] / small["peak_rss_mib"],
        "query": {
            "dataset_files": files,
            "dataset_seconds": t_dataset,
            "single_file_seconds": t_single,
            "ratio": t_dataset / t_single,
        },
    }
    print(json.dumps(report, indent=2))
    print(
        f"\nlarge: {large['bars']:,} bars in {large['seconds']:.2f} s = "
        f"{large['bars_per_second']:,.0f} bars/s, peak RSS {large['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"small: {small['bars']:,} bars in {small['seconds']:.2f} s = "
        f"{small['bars_per_second']:,.0f} bars/s, peak RSS {small['peak_rss_mib']:.0f} MiB"
    )
    print(f"peak RSS large/small: {report['rss_ratio_large_to_small']:.2f}x (target <= 1.5x)")
    print(
        f"DuckDB query: {files} files {t_dataset * 1000:.1f} ms vs one file "
        f"{t_single * 1000:.1f} ms = {report['query']['ratio']:.2f}x (target <= 2x)"
    )


if __name__ == "__main__":
    main()
