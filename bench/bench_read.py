"""Reading with adjustments, in one run: one symbol's year of minute bars from a 100-symbol
dataset through ``marketpipe.read`` raw and ``adjustment="all"``, and DuckDB reading the same
rows from the same files (the baseline).

    python bench/bench_read.py [--symbols 100] [--year 2023] [--repeat 7]

The dataset is a Fake-provider ingest (its market has splits and dividends, and the ledger
keeps them); the symbol read is the one with the most actions that year. Each figure is the best
of ``--repeat`` runs in this process, after one warm-up, so the files are in the page cache for
every reader alike. Goals: ``all`` at most 1.2x ``raw``; ``raw`` at most 1.5x DuckDB. Not a
test: the figures go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import marketpipe
import pyarrow as pa
from marketpipe.dataset.actions import list_actions


def best(repeat: int, runs: dict[str, Callable[[], pa.Table]]) -> dict[str, tuple[float, int]]:
    """Each run's best time of ``repeat`` and its rows, the runs taken in turn (this machine's
    speed drifts from minute to minute: one after the other, a run could be timed in a slow
    minute and its baseline in a fast one)."""
    rows = {name: run().num_rows for name, run in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            table = run()
            times[name].append(time.perf_counter() - started)
            assert table.num_rows == rows[name]
    return {name: (min(times[name]), rows[name]) for name in runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--year", type=int, default=2023)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="reuse or keep this dataset")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mp-bench-read-"))
    root = args.keep or work / "data"
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    start, end = f"{args.year}-01-01", f"{args.year}-12-31"
    env = {
        **os.environ,
        "MARKETPIPE_FSYNC": "0",
        "MARKETPIPE_NOW": f"{args.year + 1}-01-05T00:00:00Z",
    }
    try:
        if not (root / "_marketpipe").is_dir():
            began = time.perf_counter()
            mp = Path(sys.executable).with_name("mp")
            out = subprocess.run(
                [str(mp), "ingest", "--provider", "fake", "--symbols", ",".join(symbols),
                 "--start", start, "--end", end, "--data-dir", str(root), "--json"],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            print(f"ingested in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        os.environ["MARKETPIPE_NOW"] = env["MARKETPIPE_NOW"]
        listed = list_actions(root, symbols=symbols)
        per_symbol: dict[str, int] = {}
        for action in listed:
            if action["ex_date"] and action["ex_date"].startswith(str(args.year)):
                per_symbol[action["symbol"]] = per_symbol.get(action["symbol"], 0) + 1
        symbol = max(sorted(per_symbol), key=lambda s: per_symbol[s]) if per_symbol else symbols[0]
        kinds = sorted(
            a["kind"]
            for a in listed
            if a["symbol"] == symbol and a["ex_date"].startswith(str(args.year))
        )

        def ours(adjustment: str) -> Callable[[], pa.Table]:
            return lambda: marketpipe.read(
                root, provider="fake", symbols=[symbol], start=start, end=end,
                adjustment=adjustment,
            )  # fmt: skip

        glob = f"{root}/bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/*/*.parquet"
        con = duckdb.connect()

        def baseline() -> pa.Table:
            # A relation's Arrow table: a DB-API result (``execute``) made an extra copy of
            # the rows (DuckDB 2 warns so).
            return con.sql(
                "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap "
                f"FROM read_parquet('{glob}') WHERE symbol = ? AND timestamp >= ? AND "
                "timestamp < ? ORDER BY timestamp",
                params=[symbol, f"{start} 05:00:00+00", f"{args.year + 1}-01-01 05:00:00+00"],
            ).to_arrow_table()

        timed = best(args.repeat, {"raw": ours("raw"), "all": ours("all"), "duckdb": baseline})
        figures = {
            name: {"seconds": round(seconds, 4), "rows": rows}
            for name, (seconds, rows) in timed.items()
        }
        result = {
            "dataset": f"{args.symbols} symbols, {args.year}, 1m bars (Fake provider)",
            "symbol": symbol,
            "actions_that_year": kinds,
            **figures,
            "all_vs_raw": round(figures["all"]["seconds"] / figures["raw"]["seconds"], 2),
            "raw_vs_duckdb": round(figures["raw"]["seconds"] / figures["duckdb"]["seconds"], 2),
            "all_vs_duckdb": round(figures["all"]["seconds"] / figures["duckdb"]["seconds"], 2),
        }
        print(json.dumps(result, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
