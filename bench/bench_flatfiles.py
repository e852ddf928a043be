"""Whole-market minute files to committed Parquet, against ``gzip -dc`` of the same files.

    python bench/bench_flatfiles.py [--tickers 10000] [--days 3] [--dense 0.3]

A synthetic market (``--dense`` of the tickers trade every minute of both extended sessions,
the rest in 25 regular minutes; about 3M rows a day at the defaults) is written as Massive's
gzipped minute files and served by ``marketpipe_massive.testing.MassiveServer`` on 127.0.0.1.
In one run, ``--runs`` times in turn: the baseline (``gzip -dc`` of every file to /dev/null)
and ``mp ingest --provider massive --all-symbols --session extended`` in a child process, whose
peak RSS is its own. Prints one JSON line: the best ratio and the median one (this machine's
speed drifts from minute to minute, so only ratios taken side by side compare). Not a test:
figures go into docs/benchmarks.md.

``--workers 1x2,2x1`` also runs the same ingest on Dask, for each ``NxT`` a ``dask scheduler``
and ``dask worker --nworkers N --nthreads T`` on 127.0.0.1 (started before the timing, with the
server's settings in their environment), in turns with the in-process runs: its own line per
cluster, with the CPU of the client and the workers together (``distributed`` and ``psutil``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_dask import Cluster

_MEASURED = """
import json, resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
use = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = round(use.ru_utime + use.ru_stime, 1)
print(json.dumps({"cpu_s": cpu, "peak_rss_mb": round(use.ru_maxrss / 1024)}), file=sys.stderr)
sys.exit(code)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--dense", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100_000, help="bars per unit")
    parser.add_argument("--runs", type=int, default=3, help="baseline and ingest pairs")
    parser.add_argument("--spy", metavar="RAW", help="record the ingest with py-spy (raw)")
    parser.add_argument(
        "--workers", default="", help="Dask clusters too: NxT,... (workers x threads)"
    )
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in w.split("x")) for w in args.workers.split(",") if w]

    from bench_dask import Cluster  # the same scheduler and workers as the Dask bench's
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.model.values import TimeRange
    from marketpipe_massive.flatfiles import day_key
    from marketpipe_massive.testing import Listing, MassiveServer, csv_gz, day_bars, minute_bars

    days = nyse_calendar().sessions(TimeRange(dt.date(2024, 3, 4), dt.date(2024, 4, 30)))
    days = days[: args.days]
    dense = int(args.tickers * args.dense)
    universe = [
        Listing(f"T{i:05d}", dense=i < dense, price=5.0 + (i % 400)) for i in range(args.tickers)
    ]
    work = Path(tempfile.mkdtemp(prefix="mp-bench-flat-"))
    rows = 0
    files = []
    for day in days:
        table = minute_bars(day, universe)
        rows += table.num_rows
        path = work / f"{day}.csv.gz"
        path.write_bytes(csv_gz(table, level=6))
        files.append((day, path))
        (work / f"{day}.day.csv.gz").write_bytes(csv_gz(day_bars(table, day)))
    size = sum(p.stat().st_size for _, p in files)

    def gunzip() -> float:
        started = time.perf_counter()
        for _, path in files:
            subprocess.run(["gzip", "-dc", str(path)], stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started

    runs: dict[str, list[dict]] = {}
    clusters: dict[str, Cluster] = {}
    with MassiveServer() as server:
        for day, path in files:
            server.publish(day_key("minute_aggs_v1", day), path.read_bytes())
            server.publish(day_key("day_aggs_v1", day), (work / f"{day}.day.csv.gz").read_bytes())
        try:
            for n, t in shapes:
                clusters[f"{n}x{t}"] = Cluster(n, t, {**os.environ, **server.env()})
            # This machine's speed drifts between runs: each ingest is timed beside a baseline
            # of its own, and the ratios are compared.
            for i in range(args.runs):
                for where in ["in-process", *clusters]:
                    baseline = gunzip()
                    got = ingest(args, server, work / f"data{i}", days, clusters.get(where))
                    got.update(gzip_dc_s=baseline, ratio=got["ingest_s"] / baseline)
                    assert got["bars"] == rows, (where, got["bars"], rows)
                    runs.setdefault(where, []).append(got)
        finally:
            for cluster in clusters.values():
                cluster.close()
    shutil.rmtree(work, ignore_errors=True)
    for where, done in runs.items():
        best = min(done, key=lambda r: r["ratio"])
        ratios = sorted(r["ratio"] for r in done)
        line = {
            "where": where,
            "tickers": args.tickers,
            "days": len(days),
            "rows": rows,
            "gz_mb": round(size / 2**20, 1),
            "runs": len(done),
            "gzip_dc_s": round(best["gzip_dc_s"], 2),
            "ingest_s": round(best["ingest_s"], 2),
            "ratio": round(best["ratio"], 2),
            "median_ratio": round(ratios[len(ratios) // 2], 2),
            "bars_per_s": round(rows / min(r["ingest_s"] for r in done)),
            "cpu_s": min(r["cpu_s"] for r in done),
            "day_file_reads": max(r["day_file_reads"] for r in done),
        }
        if where == "in-process":
            line["peak_rss_mb"] = max(r["peak_rss_mb"] for r in done)
        print(json.dumps(line))


def ingest(
    args: argparse.Namespace,
    server: Any,
    data: Path,
    days: list[dt.date],
    cluster: Cluster | None = None,
) -> dict:
    """One ``mp ingest`` of the whole market in a child process (its units on ``cluster`` when
    given): its time, CPU (the workers' too) and peak RSS (the child's own)."""
    exe = Path(sys.executable).with_name("mp")
    spy = ["py-spy", "record", "--subprocesses", "--threads", "--format", "raw", "-o", args.spy,
           "--"] if args.spy else []  # fmt: skip
    where = ["--scheduler", cluster.address] if cluster else []
    gets = len(server.gets())
    workers_cpu = cluster.cpu_seconds() if cluster else 0.0
    started = time.perf_counter()
    # Through a small wrapper: a child forked from this (large) process would report this
    # process's memory as its own peak.
    out = subprocess.run(
        [sys.executable, "-c", _MEASURED, *spy, str(exe), "ingest", "--provider", "massive",
         "--all-symbols", "--session", "extended", "--start", str(days[0]), "--end",
         str(days[-1]), "--data-dir", str(data), "--concurrency", str(args.concurrency),
         "--batch-size", str(args.batch_size), *where, "--json"],
        capture_output=True, text=True, env={**os.environ, **server.env()},
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    usage = json.loads(out.stderr.strip().splitlines()[-1])
    # Each day's minute file read once for all its units (a unit that ran where its day's
    # stream was not, or a retry, reads the file again).
    usage["day_file_reads"] = sum("minute_aggs" in k for k in server.gets()[gets:])
    if cluster:
        usage["cpu_s"] = round(usage["cpu_s"] + cluster.cpu_seconds() - workers_cpu, 1)
    # py-spy prints before and after the summary
    summary, _ = json.JSONDecoder().raw_decode(out.stdout[out.stdout.index("{") :])
    shutil.rmtree(data, ignore_errors=True)
    return {"ingest_s": seconds, "bars": summary["bars"], **usage}


if __name__ == "__main__":
    main()
