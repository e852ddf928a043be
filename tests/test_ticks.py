"""Trades and quotes through every command, as a user runs them: Fake's ticks (each Fake minute
is its trades) ingested, updated, compacted, deleted, verified, read adjusted, built into bars,
and run on a Dask cluster; the bars beside them never touched."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import duckdb
import marketpipe
import pyarrow.compute as pc
from cli_helpers import mp, mp_json

QUIET = {"MARKETPIPE_FSYNC": "0"}
FAKE = ("--provider", "fake", "--symbols", "AAPL,MSFT")


def trades_of(root: Path) -> list[tuple]:
    return duckdb.sql(
        "SELECT symbol, timestamp, price, size, id, correction, sequence FROM "
        f"read_parquet('{root}/trades/**/*.parquet') ORDER BY symbol, sequence, timestamp"
    ).fetchall()


def test_ticks_go_through_update_compact_delete_and_verify_like_bars(tmp_path: Path) -> None:
    root = tmp_path / "data"
    where = ("--data-dir", str(root))
    first = {}
    for kind in ("trades", "quotes"):
        out = mp_json("ingest", *FAKE, "--start", "2024-03-04", "--end", "2024-03-05",
                      "--kind", kind, *where, env=QUIET)  # fmt: skip
        assert out["state"] == "COMPLETED" and out["kind"] == kind  # type: ignore[index]
        first[kind] = out["bars"]  # type: ignore[index]
    mp("ingest", *FAKE, "--start", "2024-03-04", "--end", "2024-03-05", *where, env=QUIET,
       check=True)  # fmt: skip
    # mp update brings each kind up to the last session, and names the rows by their kind.
    later = {**QUIET, "MARKETPIPE_NOW": "2024-03-07T23:00:00Z"}
    update = mp_json("update", *where, env=later)
    jobs = {s["timeframe"]: s["job"] for s in update["series"]}  # type: ignore[index]
    assert jobs["trades"]["kind"] == "trades" and jobs["quotes"]["kind"] == "quotes"
    assert jobs["trades"]["partitions_completed"] == 2 * 2  # two symbols, two new days
    held = trades_of(root)
    assert len(held) == first["trades"] + jobs["trades"]["bars"]
    assert jobs["trades"]["bars"] >= 2 * 2 * 390 * 4  # at least four trades a minute
    # Compaction keeps every tick and its order; files of ticks share timestamps freely.
    compact = mp_json("compact", "--kind", "trades", *where, env=QUIET)
    assert [f["files_after"] for f in compact["folders"]] == [1]  # type: ignore[index]
    assert trades_of(root) == held
    # Deleting one partition of trades leaves the quotes and bars of that day alone.
    bars_before = duckdb.sql(f"SELECT * FROM read_parquet('{root}/bars/**/*.parquet')").fetchall()
    mp("delete", "--provider", "fake", "--kind", "trades", "--symbols", "MSFT", "--start",
       "2024-03-04", "--end", "2024-03-04", "--yes", *where, env=QUIET, check=True)  # fmt: skip
    left = trades_of(root)
    assert not [r for r in left if r[0] == "MSFT" and r[1].date() == dt.date(2024, 3, 4)]
    quotes = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{root}/quotes/**/*.parquet') WHERE symbol = 'MSFT'"
    ).fetchall()[0][0]
    assert quotes > 0
    bars_after = duckdb.sql(f"SELECT * FROM read_parquet('{root}/bars/**/*.parquet')").fetchall()
    assert sorted(bars_after) == sorted(bars_before)
    report = mp_json("verify", *where, env=QUIET)
    assert report["ok"] is True and report["series"] == 3  # type: ignore[index]
    status = mp_json("status", "--kind", "trades", *where, env=QUIET)
    (series,) = status["series"]  # type: ignore[index]
    assert series["timeframe"] == "trades" and series["bars"] == len(trades_of(root))
    assert all(s["thin"] == [] and s["missing"] == [] for s in series["symbols"])
    db = sqlite3.connect(root / "_marketpipe" / "jobs.sqlite")
    paths = {p for (p,) in db.execute(
        "SELECT DISTINCT f.path FROM partitions p JOIN files f ON f.id = p.file WHERE f.path != ''"
    )}  # fmt: skip
    assert {p.split("/", 1)[0] for p in paths} == {"bars", "trades", "quotes"}


def test_split_adjusted_trades_and_bars_from_trades_agree_with_the_bars(tmp_path: Path) -> None:
    root = tmp_path / "data"
    where = ("--data-dir", str(root))
    days = ("--start", "2024-08-29", "--end", "2024-09-04")  # MSFT splits 2-for-1, ex 09-03
    for kind in ("bars", "trades"):
        mp("ingest", *FAKE, *days, "--kind", kind, *where, env=QUIET, check=True)
    asked = {"provider": "fake", "symbols": ["MSFT"], "start": "2024-08-29", "end": "2024-09-04"}
    raw = marketpipe.read(root, **asked, kind="trades")
    split = marketpipe.read(root, **asked, kind="trades", adjustment="split")
    assert raw.num_rows == split.num_rows > 0
    before = pc.less(raw["timestamp"], pc.strptime("2024-09-03 04:00", "%Y-%m-%d %H:%M", "ns",
                                                   error_is_null=False).cast(raw["timestamp"].type))  # fmt: skip
    old, new = raw.filter(before), split.filter(before)
    assert old.num_rows and pc.all(pc.equal(new["size"], pc.multiply(old["size"], 2.0))).as_py()
    assert pc.max(pc.abs(pc.subtract(new["price"], pc.divide(old["price"], 2.0)))).as_py() < 1e-9
    # Bars built from the stored trades equal Fake's own bars, field for field.
    out = mp_json("resample", "--from", "trades", "--to", "1m", *where, env=QUIET)
    assert out[0]["target"] == "fake/sim-from-trades/raw/1m"  # type: ignore[index]
    pair = [
        duckdb.sql(
            "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap FROM "
            f"read_parquet('{root}/bars/provider=fake/feed={feed}/**/*.parquet') ORDER BY ALL"
        ).fetchall()
        for feed in ("sim", "sim-from-trades")
    ]
    assert len(pair[0]) == 2 * 4 * 390  # Labor Day between
    assert pair[0] == pair[1]
    hourly = mp_json("resample", "--from", "trades", "--to", "1h", *where, env=QUIET)
    assert hourly[0]["bars_out"] == 2 * 4 * 7  # type: ignore[index]


def test_a_sink_that_stores_bars_only_refuses_ticks_in_one_line_before_any_job(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    out = mp("ingest", *FAKE, "--start", "2024-03-04", "--end", "2024-03-04", "--kind", "trades",
             "--sink", "delta", "--data-dir", str(root), env=QUIET)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "Error: the delta sink stores bars, not trades: choose a sink that does (mp sinks lists "
        "them; the parquet sink stores every kind)"
    ]
    jobs = root / "_marketpipe" / "jobs.sqlite"
    assert not jobs.exists() or not sqlite3.connect(jobs).execute("SELECT * FROM jobs").fetchall()
