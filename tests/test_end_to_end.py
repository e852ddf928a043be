"""``mp ingest`` with the Fake provider, read back by DuckDB, pyarrow, pandas and polars."""

from __future__ import annotations

from pathlib import Path

import duckdb
import exchange_calendars as xcals
import pyarrow.dataset as ds
import pytest
from cli_helpers import mp, mp_json

SYMBOLS = ["AAPL", "MSFT", "BRK.B", "MDGN+"]
START, END = "2024-10-28", "2024-12-06"  # spans two month folders, Thanksgiving and an early close


def expected_regular_minutes(start: str, end: str) -> int:
    cal = xcals.get_calendar("XNYS", start="2024-01-01", end="2025-12-31")
    sched = cal.schedule.loc[start:end]
    return int(((sched["close"] - sched["open"]).dt.total_seconds() // 60).sum())


def bars_sql(root: Path) -> str:
    return f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("e2e") / "data"
    summary = mp_json(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        ",".join(SYMBOLS),
        "--start",
        START,
        "--end",
        END,
        "--data-dir",
        str(root),
    )
    return root, summary  # type: ignore[return-value]


def test_summary_matches_the_calendar(ingested: tuple[Path, dict]) -> None:
    _, summary = ingested
    per_symbol = expected_regular_minutes(START, END)
    assert summary["state"] == "COMPLETED"
    assert summary["bars"] == per_symbol * len(SYMBOLS)
    assert summary["partitions"] == 29 * len(SYMBOLS)  # 30 weekdays less Thanksgiving
    assert summary["rejected_rows"] == 0 and summary["partitions_failed"] == 0


def test_duckdb_reads_every_bar_once_with_invariants(ingested: tuple[Path, dict]) -> None:
    root, _ = ingested
    per_symbol = expected_regular_minutes(START, END)
    rows = duckdb.sql(f"""
        SELECT symbol, count(*), count(DISTINCT timestamp),
               bool_and(low <= least(open, close) AND high >= greatest(open, close) AND low > 0),
               bool_and(volume >= 0)
        FROM {bars_sql(root)} GROUP BY symbol ORDER BY symbol""").fetchall()
    assert rows == [(s, per_symbol, per_symbol, True, True) for s in sorted(SYMBOLS)]
    keys = duckdb.sql(
        f"SELECT DISTINCT provider, feed, timeframe, month FROM {bars_sql(root)} ORDER BY month"
    ).fetchall()
    assert keys == [("fake", "sim", "1m", m) for m in ("2024-10", "2024-11", "2024-12")]
    early = duckdb.sql(f"""SELECT count(*) FROM {bars_sql(root)} WHERE symbol = 'AAPL'
        AND CAST(timestamp AT TIME ZONE 'America/New_York' AS DATE) = DATE '2024-11-29'""").fetchall()
    assert early == [(210,)]


def test_pyarrow_pandas_and_polars_read_the_dataset(ingested: tuple[Path, dict]) -> None:
    import pandas as pd
    import polars as pl

    root, summary = ingested
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == summary["bars"]
    assert set(table["symbol"].unique().to_pylist()) == set(SYMBOLS)
    assert len(pd.read_parquet(root)) == summary["bars"]
    frame = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True).collect()
    assert frame.height == summary["bars"]
    assert sorted(frame["symbol"].unique().to_list()) == sorted(SYMBOLS)


def test_files_are_few_and_metadata_names_the_job(ingested: tuple[Path, dict]) -> None:
    import pyarrow.parquet as pq

    root, summary = ingested
    files = sorted(root.rglob("*.parquet"))
    assert 3 <= len(files) <= 6  # one per month for 4 symbols, not one per symbol-day
    meta = pq.read_metadata(files[0]).metadata
    assert meta[b"marketpipe.job_id"].decode() == summary["job_id"]
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_reingesting_a_sub_range_replaces_it_without_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "data"
    args = ["ingest", "--provider", "fake", "--symbols", "AAPL,MSFT", "--data-dir", str(root)]
    mp_json(*args, "--start", "2024-03-01", "--end", "2024-03-29")
    mp_json(
        *args[:-4],
        "--symbols",
        "AAPL",
        "--data-dir",
        str(root),
        "--start",
        "2024-03-12",
        "--end",
        "2024-03-13",
        "--refresh",
    )
    rows = duckdb.sql(f"""SELECT symbol, count(*), count(DISTINCT timestamp)
        FROM {bars_sql(root)} GROUP BY symbol ORDER BY symbol""").fetchall()
    assert rows == [("AAPL", 20 * 390, 20 * 390), ("MSFT", 20 * 390, 20 * 390)]
    jobs = mp_json("jobs", "list", "--data-dir", str(root))
    assert [j["state"] for j in jobs] == ["COMPLETED", "COMPLETED"]  # type: ignore[index]


def test_every_timeframe_and_the_extended_session(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for tf, per_day in [("5m", 78), ("1h", 7), ("1d", 1)]:
        s = mp_json(
            "ingest",
            "--provider",
            "fake",
            "--symbols",
            "SPY",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-05",
            "--timeframe",
            tf,
            "--data-dir",
            str(root),
        )
        assert s["bars"] == 2 * per_day  # type: ignore[index]
    s = mp_json(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "SPY",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-04",
        "--session",
        "extended",
        "--data-dir",
        str(root),
    )
    assert s["bars"] == 960  # type: ignore[index]
    timeframes = duckdb.sql(
        f"SELECT timeframe, count(*) FROM {bars_sql(root)} GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert timeframes == [("1d", 2), ("1h", 14), ("1m", 960), ("5m", 156)]


def test_bad_rows_are_quarantined_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "data"
    summary = mp_json(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "AAPL",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-05",
        "-o",
        "bad_row_rate=0.05",
        "--data-dir",
        str(root),
    )
    rejected = summary["rejected_rows"]  # type: ignore[index]
    assert summary["state"] == "COMPLETED" and rejected > 10  # type: ignore[index]
    count = duckdb.sql(f"SELECT count(*) FROM {bars_sql(root)}").fetchall()[0][0]
    assert count + rejected == 2 * 390
    quarantine = list((root / "_marketpipe" / "quarantine").rglob("*.csv"))
    assert len(quarantine) == 2
    assert sum(len(p.read_text().splitlines()) - 1 for p in quarantine) == rejected
    shown = mp_json("jobs", "show", summary["job_id"], "--data-dir", str(root))  # type: ignore[index]
    assert sum(p["rejected"] for p in shown["partitions_detail"]) == rejected  # type: ignore[index]


def test_human_output_has_a_summary_table(tmp_path: Path) -> None:
    out = mp(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "AAPL",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-04",
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert out.returncode == 0
    for label in ("partitions", "bars", "rejected rows", "elapsed", "bars/s"):
        assert label in out.stdout
    assert "1 of 1" in out.stdout and "390" in out.stdout  # one regular session of minutes
