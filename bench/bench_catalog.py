"""Catalog benchmark: what planning and `mp status` ask it, what a commit saves by asking it,
and compaction of a folder of small files.

    python bench/bench_catalog.py [--symbols 10000] [--year 2023] [--files-per-month 800]

1. Planning: a catalog holding ``symbols`` x every session of ``year`` (2.5M partitions for 10,000
   symbols), indexed as ~256-partition files like real units. Then the question planning asks for
   a job of exactly those partitions ("which are stored complete?", a mask). Time and peak
   memory (tracemalloc). ``--years 20`` measures the whole of planning, status and the spans on
   a twenty-year whole-market catalog instead (``scale-*`` parts).
2. Commit cost per unit: a month folder of ``files-per-month`` real files (each with a
   256-partition footer), then units re-ingesting one partition each, committed by the sink that
   asks the catalog; against the baseline of the same run, reading every footer of the folder,
   which is what each commit did before the catalog. Medians over the units.

3. Status: `mp status`'s summary of 1,000 symbols x 2 years (about 500,000 partitions).
4. Compaction: a month folder of 200 small files (one symbol's month each) into one.

Each part runs in a fresh child process, so peak RSS is its own. Not a test: the README quotes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

PER_FILE = 256


def planning(args: argparse.Namespace) -> dict[str, float]:
    import numpy as np
    from marketpipe.ingestion import Timeframe, TimeRange
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.model.values import Series
    from marketpipe.storage.catalog import Catalog

    series = Series("fake", "sim", "raw", Timeframe.M1)
    days = nyse_calendar().sessions(TimeRange(dt.date(args.year, 1, 1), dt.date(args.year, 12, 31)))
    symbols = [f"S{i:05d}" for i in range(args.symbols)]
    root = Path(args.dir)
    catalog = Catalog(root)
    built = time.perf_counter()
    n_files = _fill(catalog, series, symbols, days)
    build_seconds = time.perf_counter() - built

    def ask() -> np.ndarray:
        return catalog.stored_mask(series, symbols, days)

    asked = time.perf_counter()
    mask = ask()
    ask_seconds = time.perf_counter() - asked
    # Peak memory in a second pass: tracemalloc slows allocation down, so it is not timed.
    tracemalloc.start()
    mask = ask()
    _, ask_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert int(mask.sum()) == len(symbols) * len(days)
    return {
        "partitions": int(mask.sum()),
        "files": n_files,
        "catalog_mb": (root / "_marketpipe" / "catalog.sqlite").stat().st_size / 2**20,
        "build_seconds": build_seconds,
        "ask_seconds": ask_seconds,
        "ask_peak_mb": ask_peak / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _fill(catalog: object, series: object, symbols: list[str], days: list[dt.date]) -> int:
    """Index ``symbols`` x ``days`` as files of 256 partitions each, as units write them."""
    from marketpipe.ingestion import Session
    from marketpipe.storage.footer import Entry, Footer

    by_month: dict[str, list[dt.date]] = {}
    for day in days:
        by_month.setdefault(f"{day:%Y-%m}", []).append(day)
    n_files = 0
    for month, month_days in by_month.items():
        keys = [(s, d.isoformat()) for s in symbols for d in month_days]
        updates = {}
        stats = {}
        for start in range(0, len(keys), PER_FILE):
            name = f"part-bench-{n_files:06d}.parquet"
            entries = {k: Entry(390, True) for k in keys[start : start + PER_FILE]}
            updates[name] = Footer(entries, Session.REGULAR, "bench", "2024-01-01T00:00:00+00:00")
            stats[name] = (1, n_files)
            n_files += 1
        catalog._apply(series, month, updates, stats)  # type: ignore[attr-defined]
    return n_files


def _scale_series() -> object:
    from marketpipe.ingestion import Timeframe
    from marketpipe.model.values import Series

    return Series("massive", "sip", "raw", Timeframe.M1)


def scale_build(args: argparse.Namespace) -> dict[str, float]:
    """A whole market's ``years`` (10,000 symbols every session) indexed as a whole-market ingest
    writes it: each day's symbols in files of 256 (units of 100,000 minute bars). The last
    year's files exist (empty) on disk, so planning it syncs against real folders; the older
    years are in the catalog alone (nothing asks their folders)."""
    import os

    from marketpipe.ingestion import Session, TimeRange
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.storage.catalog import Catalog
    from marketpipe.storage.footer import Entry, Footer

    series = _scale_series()
    first = dt.date(args.year - args.years + 1, 1, 1)
    days = nyse_calendar().sessions(TimeRange(first, dt.date(args.year, 12, 31)))
    symbols = [f"S{i:05d}" for i in range(args.symbols)]
    root = Path(args.dir)
    catalog = Catalog(root)
    by_month: dict[str, list[dt.date]] = {}
    for day in days:
        by_month.setdefault(f"{day:%Y-%m}", []).append(day)
    started = time.perf_counter()
    n_files = 0
    for month, month_days in by_month.items():
        updates, stats = {}, {}
        real = month.startswith(str(args.year))
        for day in month_days:
            for start in range(0, len(symbols), PER_FILE):
                name = f"part-bench-{n_files:07d}.parquet"
                entries = {
                    (s, day.isoformat()): Entry(390, True)
                    for s in symbols[start : start + PER_FILE]
                }
                updates[name] = Footer(
                    entries, Session.REGULAR, "bench", "2024-01-01T00:00:00+00:00"
                )
                if real:
                    path = root / catalog.holdings.where(series, month, name)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                    st = os.stat(path)
                    stats[name] = (st.st_size, st.st_mtime_ns)
                else:
                    stats[name] = (1, n_files)
                n_files += 1
        catalog._apply(series, month, updates, stats)  # type: ignore[attr-defined]
    build = time.perf_counter() - started
    catalog.close()
    size = sum(p.stat().st_size for p in (root / "_marketpipe").glob("catalog.sqlite*"))
    partitions = len(days) * len(symbols)
    return {
        "partitions": partitions,
        "files": n_files,
        "catalog_mb": size / 2**20,
        "bytes_per_partition": size / partitions,
        "build_seconds": build,
    }


def scale_plan(args: argparse.Namespace) -> dict[str, float]:
    """Plan a one-year whole-market job as ``mp ingest`` does (``plan_job``: the catalog synced
    with the year's folders, the stored mask, the plan written to a real job store, units):
    the stored year (nothing to fetch) and the next one (everything to fetch)."""
    from marketpipe.ingestion import (
        IngestionConfiguration,
        IngestionJob,
        IngestionJobId,
        Session,
        Symbol,
        Timeframe,
        TimeRange,
    )
    from marketpipe.jobs.store import SqliteJobStore
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.plugins import registry
    from marketpipe.run.planning import plan_job
    from marketpipe.storage.catalog import Catalog

    series = _scale_series()
    calendar = nyse_calendar()
    spec = registry.get("massive")
    root = Path(args.dir)
    out: dict[str, float] = {}
    for label, year in (("stored", args.year), ("new", args.year + 1)):
        for measure in ("time", "memory"):
            catalog = Catalog(root)
            store = SqliteJobStore.for_data_dir(root)
            job = IngestionJob(
                job_id=IngestionJobId.generate(),
                symbols=tuple(Symbol(f"S{i:05d}") for i in range(args.symbols)),
                time_range=TimeRange(dt.date(year, 1, 1), dt.date(year, 12, 31)),
                configuration=IngestionConfiguration(
                    provider="massive", timeframe=Timeframe.M1, batch_size=100_000
                ),
            )
            store.save(job)
            windows = calendar.windows(job.time_range, Session.REGULAR)
            if measure == "memory":
                tracemalloc.start()
            started = time.perf_counter()
            plan = plan_job(store, catalog, series, job, windows, spec)
            seconds = time.perf_counter() - started
            if measure == "memory":
                out[f"{label}_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
            else:
                out[f"{label}_seconds"] = seconds
                out[f"{label}_partitions"] = plan.total
                out[f"{label}_pending"] = plan.pending
                out[f"{label}_units"] = len(plan.units)
            store.close()
            catalog.close()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["job_store_mb"] = (root / "_marketpipe" / "jobs.sqlite").stat().st_size / 2**20
    return out


def scale_status(args: argparse.Namespace) -> dict[str, float]:
    """`mp status`'s summary of the whole ``years`` catalog (its JSON document included): the
    first time, when the catalog makes its month rollups from the blocks, and again, when it
    reads them; then the symbols' spans, mp update's first question."""
    from marketpipe.dataset.status import series_status, status_dict
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.storage.catalog import Catalog

    out: dict[str, float] = {}
    for label in ("first", "again"):
        catalog = Catalog(Path(args.dir))
        started = time.perf_counter()
        result = series_status(catalog, _scale_series(), nyse_calendar())
        summary = status_dict([result])
        out[f"status_{label}_seconds"] = time.perf_counter() - started
        assert len(result.symbols) == args.symbols, len(result.symbols)
        assert not any(s.missing for s in result.symbols)
        assert len(summary["series"][0]["symbols"]) == args.symbols  # type: ignore[index]
        catalog.close()
    catalog = Catalog(Path(args.dir))
    started = time.perf_counter()
    spans = catalog.spans(_scale_series())
    out["spans_seconds"] = time.perf_counter() - started
    assert len(spans) == args.symbols
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def status(args: argparse.Namespace) -> dict[str, float]:
    from marketpipe.dataset.status import series_status, status_dict
    from marketpipe.ingestion import Timeframe, TimeRange
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.model.values import Series
    from marketpipe.storage.catalog import Catalog

    series = Series("fake", "sim", "raw", Timeframe.M1)
    calendar = nyse_calendar()
    days = calendar.sessions(TimeRange(dt.date(args.year - 1, 1, 1), dt.date(args.year, 12, 31)))
    symbols = [f"S{i:05d}" for i in range(args.status_symbols)]
    catalog = Catalog(Path(args.dir))
    _fill(catalog, series, symbols, days)
    started = time.perf_counter()
    result = series_status(catalog, series, calendar)
    summary = status_dict([result])
    seconds = time.perf_counter() - started
    assert len(result.symbols) == len(symbols)
    return {
        "partitions": len(symbols) * len(days),
        "status_seconds": seconds,
        "json_symbols": len(summary["series"][0]["symbols"]),  # type: ignore[index]
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def compact(args: argparse.Namespace) -> dict[str, float]:
    import numpy as np
    import pyarrow as pa
    from marketpipe.ingestion import Session, Timeframe, TimeRange
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.model.schema import BAR_SCHEMA
    from marketpipe.model.values import Series
    from marketpipe.plugins.sink import CommitRequest
    from marketpipe.storage.compact import compact_folder
    from marketpipe.storage.parquet_sink import ParquetSink

    root = Path(args.dir)
    sink = ParquetSink(root, durable=False)
    calendar = nyse_calendar()
    windows = calendar.windows(
        TimeRange(dt.date(args.year, 3, 1), dt.date(args.year, 3, 31)), Session.REGULAR
    )
    stamps = np.concatenate(
        [np.arange(w.start_ns, w.end_ns, 60 * 10**9, dtype=np.int64) for w in windows]
    )
    rng = np.random.default_rng(7)
    for i in range(args.small_files):  # one symbol's month per file: 200 small files
        price = 100 + np.cumsum(rng.normal(0, 0.05, len(stamps)))
        table = pa.table(
            {
                "symbol": [f"S{i:04d}"] * len(stamps),
                "timestamp": pa.array(stamps).cast(pa.timestamp("ns", tz="UTC")),
                "open": price,
                "high": price + 0.05,
                "low": price - 0.05,
                "close": price,
                "volume": rng.integers(100, 10_000, len(stamps)),
                "trade_count": rng.integers(1, 100, len(stamps)),
                "vwap": price,
            }
        ).cast(BAR_SCHEMA)
        sink.commit(
            CommitRequest(
                table=table,
                coverage={f"S{i:04d}": tuple(w.day for w in windows)},
                provider="fake",
                feed="sim",
                timeframe=Timeframe.M1,
                job_id=f"small{i:04d}",
            )
        )
    series = Series("fake", "sim", "raw", Timeframe.M1)
    folder = next(root.glob("bars/provider=*/*/*/*/month=*"))
    before = len(list(folder.glob("*.parquet")))
    size_before = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    started = time.perf_counter()
    result = compact_folder(sink.store, sink.catalog, series, folder.name.split("=")[1])
    seconds = time.perf_counter() - started
    after = list(folder.glob("*.parquet"))
    return {
        "files_before": before,
        "files_after": len(after),
        "rows": result.rows,
        "mb_before": size_before / 2**20,
        "mb_after": sum(p.stat().st_size for p in after) / 2**20,
        "seconds": seconds,
        "rows_per_second": result.rows / seconds,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def commits(args: argparse.Namespace) -> dict[str, float]:
    import pyarrow.parquet as pq
    from marketpipe.ingestion import Session, Timeframe, TimeRange
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.model.schema import empty_bars
    from marketpipe.plugins.sink import CommitRequest
    from marketpipe.storage.parquet_sink import ParquetSink

    root = Path(args.dir)
    sink = ParquetSink(root, durable=False)
    days = nyse_calendar().sessions(TimeRange(dt.date(args.year, 3, 1), dt.date(args.year, 3, 31)))
    symbols = [f"S{i:05d}" for i in range(args.files_per_month * PER_FILE // len(days) + 1)]
    keys = [(s, d) for s in symbols for d in days][: args.files_per_month * PER_FILE]
    # Real files of the month: each a unit's footer over 256 partitions; rows kept tiny so the
    # setup is quick (a footer's cost does not depend on the rows).
    for start in range(0, len(keys), PER_FILE):
        chunk = keys[start : start + PER_FILE]
        window = nyse_calendar().window(chunk[0][1], Session.REGULAR)
        table = _one_bar(chunk[0][0], window.start_ns, empty_bars().schema)
        sink.commit(
            CommitRequest(
                table=table,
                coverage={s: tuple(d for s2, d in chunk if s2 == s) for s, _ in chunk},
                provider="fake",
                feed="sim",
                timeframe=Timeframe.M1,
                job_id=f"setup{start // PER_FILE:05d}",
            )
        )
    folder = next(root.glob("bars/provider=*/*/*/*/month=*"))
    files = sorted(folder.glob("*.parquet"))
    with_catalog, footer_scan = [], []
    for i in range(args.units):
        symbol, day = keys[(i * 7919) % len(keys)]
        started = time.perf_counter()
        for path in files:  # the baseline: what each commit read first, before the catalog
            pq.read_schema(path).metadata  # noqa: B018
        footer_scan.append(time.perf_counter() - started)
        window = nyse_calendar().window(day, Session.REGULAR)
        started = time.perf_counter()
        sink.commit(
            CommitRequest(
                table=_one_bar(symbol, window.start_ns, empty_bars().schema),
                coverage={symbol: (day,)},
                provider="fake",
                feed="sim",
                timeframe=Timeframe.M1,
                job_id=f"unit{i:04d}",
            )
        )
        with_catalog.append(time.perf_counter() - started)
        files = sorted(folder.glob("*.parquet"))
    return {
        "files_in_month": len(files),
        "commit_ms": statistics.median(with_catalog) * 1000,
        "footer_scan_ms": statistics.median(footer_scan) * 1000,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _one_bar(symbol: str, ts_ns: int, schema: object) -> object:
    import pyarrow as pa

    row = {
        "symbol": [symbol],
        "timestamp": pa.array([ts_ns], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "open": [1.0],
        "high": [1.0],
        "low": [1.0],
        "close": [1.0],
        "volume": [1.0],
        "trade_count": [1],
        "vwap": [1.0],
    }
    return pa.table(row).cast(schema)  # type: ignore[arg-type]


def _run_part(part: str, folder: str) -> dict[str, float]:
    """One part in a child process of its own (its own peak RSS), on ``folder``; printed."""
    out = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--part", part, "--dir", folder],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    print(part, json.dumps({k: round(v, 3) for k, v in result.items()}))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--year", type=int, default=2023)
    parser.add_argument("--files-per-month", type=int, default=800)
    parser.add_argument("--units", type=int, default=30)
    parser.add_argument("--status-symbols", type=int, default=1_000)
    parser.add_argument("--small-files", type=int, default=200)
    parser.add_argument("--years", type=int, default=0, help="whole-market scale: 20")
    parser.add_argument(
        "--part",
        choices=[
            "planning",
            "status",
            "compact",
            "commits",
            "scale-build",
            "scale-plan",
            "scale-status",
        ],
    )
    parser.add_argument("--dir")
    args = parser.parse_args()
    if args.part:
        parts = {
            "planning": planning,
            "status": status,
            "compact": compact,
            "commits": commits,
            "scale-build": scale_build,
            "scale-plan": scale_plan,
            "scale-status": scale_status,
        }
        result = parts[args.part](args)
        print(json.dumps(result))
        return
    if args.years:
        # One catalog for the three parts; each part in its own process (its own peak RSS).
        with tempfile.TemporaryDirectory() as tmp:
            for part in ("scale-build", "scale-plan", "scale-status"):
                _run_part(part, tmp)
        return
    for part in ("planning", "status", "compact", "commits"):
        with tempfile.TemporaryDirectory() as tmp:
            result = _run_part(part, tmp)
        if part == "commits":
            ratio = result["footer_scan_ms"] / result["commit_ms"]
            print(
                f"  a whole commit with the catalog takes {result['commit_ms']:.1f} ms; reading "
                f"every footer of the {result['files_in_month']}-file folder, as each commit did "
                f"before, took {result['footer_scan_ms']:.1f} ms alone ({ratio:.1f}x the commit)"
            )


if __name__ == "__main__":
    main()
