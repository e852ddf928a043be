"""Durability figures: kill-and-resume, and what crash safety costs.

    python bench/bench_durability.py [--kills 20]

1. Kill and resume: an uninterrupted Fake job is the reference; the same job is then killed with
   SIGKILL at random progress marks (some during start-up) and rerun until it completes. Reports
   kills survived, temp files the kills left (swept by the next run), rows lost, duplicate rows
   and temp files left at the end, comparing row for row with the reference.
2. Cost of crash safety: the same job with fsync on every commit (the default) and without
   (MARKETPIPE_FSYNC=0), alternated, medians of three, in the same run.

Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

MP = str(Path(sys.executable).with_name("mp"))


def job(symbols: int, end: str, root: Path) -> list[str]:
    return [
        MP,
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        ",".join(f"D{i:03d}" for i in range(symbols)),
        "--start",
        "2024-01-02",
        "--end",
        end,
        "--batch-size",
        "20000",
        "--data-dir",
        str(root),
        "--json",
    ]


def completed(root: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{root / '_marketpipe' / 'jobs.sqlite'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT count(*) FROM partitions WHERE state = 'COMPLETED'")
            return int(row.fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def table(root: Path) -> str:
    return f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)"


def kill_and_resume(kills: int) -> dict[str, object]:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as work:
        reference, crashed = Path(work) / "reference", Path(work) / "crashed"
        cmd_ref = job(40, "2024-06-28", reference)
        subprocess.run(cmd_ref, capture_output=True, check=True)
        total = completed(reference)
        marks = sorted(rng.sample(range(total // 50, total * 49 // 50), kills - 2))
        survived = temps_left_by_kills = 0
        for mark in [None, None, *marks]:
            proc = subprocess.Popen(
                job(40, "2024-06-28", crashed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if mark is None:
                time.sleep(rng.uniform(0.05, 0.6))
            else:
                while proc.poll() is None and completed(crashed) < mark:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0, 0.02))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                survived += 1
                temps_left_by_kills += sum(1 for p in crashed.rglob("*") if p.name.endswith(".tmp"))
        final = subprocess.run(job(40, "2024-06-28", crashed), capture_output=True, text=True)
        state = json.loads(final.stdout)["state"]
        cols = "symbol, timestamp, open, high, low, close, volume, trade_count, vwap"
        lost = duckdb.sql(
            f"SELECT count(*) FROM (SELECT {cols} FROM {table(reference)} EXCEPT ALL "
            f"SELECT {cols} FROM {table(crashed)})"
        ).fetchall()[0][0]
        extra = duckdb.sql(
            f"SELECT count(*) FROM (SELECT {cols} FROM {table(crashed)} EXCEPT ALL "
            f"SELECT {cols} FROM {table(reference)})"
        ).fetchall()[0][0]
        dupes = duckdb.sql(
            f"SELECT count(*) - count(DISTINCT (symbol, timestamp)) FROM {table(crashed)}"
        ).fetchall()[0][0]
        rows = duckdb.sql(f"SELECT count(*) FROM {table(reference)}").fetchall()[0][0]
        return {
            "rows": rows,
            "kills_survived": survived,
            "final_state": state,
            "temp_files_left_by_kills": temps_left_by_kills,
            "rows_lost": lost,
            "rows_extra": extra,
            "duplicate_rows": dupes,
            "temp_files_at_end": sum(1 for p in crashed.rglob("*") if p.name.endswith(".tmp")),
        }


def fsync_cost() -> dict[str, float]:
    rates: dict[str, list[float]] = {"fsync": [], "no_fsync": []}
    for _ in range(3):
        for mode, flag in (("fsync", "1"), ("no_fsync", "0")):
            with tempfile.TemporaryDirectory() as work:
                out = subprocess.run(
                    job(100, "2024-06-28", Path(work) / "d"),
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "MARKETPIPE_FSYNC": flag},
                )
                summary = json.loads(out.stdout)
                rates[mode].append(summary["bars_per_second"])
    result = {mode: statistics.median(values) for mode, values in rates.items()}
    result["cost_percent"] = (1 - result["fsync"] / result["no_fsync"]) * 100
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    crash = kill_and_resume(args.kills)
    cost = fsync_cost()
    print(json.dumps({"kill_and_resume": crash, "fsync": cost}, indent=2))
    print(
        f"\n{crash['kills_survived']} SIGKILLs survived over {crash['rows']:,} rows: "
        f"{crash['rows_lost']} rows lost, {crash['duplicate_rows']} duplicates, "
        f"{crash['temp_files_at_end']} temp files left ({crash['temp_files_left_by_kills']} "
        f"left by kills, swept by the next run); final state {crash['final_state']}"
    )
    print(
        f"bars/s with fsync {cost['fsync']:,.0f}, without {cost['no_fsync']:,.0f}: crash "
        f"safety costs {cost['cost_percent']:.1f}%"
    )


if __name__ == "__main__":
    main()
