"""Datasets, not jobs: ingest fetches only what is missing, `mp update` keeps series current,
`mp verify` finds what went wrong; the CLI run as a user runs it, real Parquet read by DuckDB."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from cli_helpers import HERE, mp, mp_json
from marketpipe_alpaca.fake_market import FakeMarket
from marketpipe_alpaca.testing import FakeAlpacaServer

KEY, SECRET = "PKINCREMENTAL0001", "SKINCREMENTAL0002"
MP = str(Path(sys.executable).with_name("mp"))
# 2024-03-12 is a Tuesday (EDT): the session closes 20:00 UTC; Alpaca's bars are final 15
# minutes later.
AFTER_TUESDAY = "2024-03-12T21:00:00+00:00"


def alpaca_env(server: FakeAlpacaServer, now: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "MARKETPIPE_"))}
    env.update(
        {
            "APCA_API_KEY_ID": KEY,
            "APCA_API_SECRET_KEY": SECRET,
            "MARKETPIPE_ALPACA_BASE_URL": server.url,
            "MARKETPIPE_FSYNC": "0",
        }
    )
    if now is not None:
        env["MARKETPIPE_NOW"] = now
    return env


def run(*args: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [MP, *args, "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def alpaca(root: Path, symbols: str, start: str, end: str | None, *extra: str) -> list[str]:
    args = ["ingest", "--provider", "alpaca", "--symbols", symbols, "--start", start]
    return [*args, *(["--end", end] if end else []), "--data-dir", str(root), *extra]


def rows(root: Path, where: str = "true") -> list[tuple]:
    return duckdb.sql(
        "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap FROM "
        f"read_parquet('{root}/bars/provider=*/**/*.parquet', hive_partitioning=true) WHERE {where} "
        "ORDER BY ALL"
    ).fetchall()


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(KEY, SECRET) as s:
        yield s


def test_an_identical_rerun_makes_no_requests_and_a_longer_range_fetches_only_new_days(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    env = alpaca_env(server)
    first = run(*alpaca(root, "AAPL,MSFT", "2024-03-04", "2024-03-08"), env=env)
    assert first["partitions_completed"] == 10 and first["partitions_stored"] == 0
    asked = server.stats["requests"]
    before = rows(root)

    again = run(*alpaca(root, "AAPL,MSFT", "2024-03-04", "2024-03-08"), env=env)
    assert server.stats["requests"] == asked  # not one request
    assert again["state"] == "COMPLETED" and again["partitions_stored"] == 10
    assert again["partitions_completed"] == 0 and again["bars"] == 0
    assert rows(root) == before

    longer = run(*alpaca(root, "AAPL,MSFT", "2024-03-04", "2024-03-12"), env=env)
    assert longer["partitions_stored"] == 10 and longer["partitions_completed"] == 4
    assert server.stats["requests"] > asked
    fresh = tmp_path / "fresh"
    run(*alpaca(fresh, "AAPL,MSFT", "2024-03-04", "2024-03-12"), env=env)
    assert rows(root) == rows(fresh)

    # Each job records what it skipped and what it fetched.
    jobs = mp_json("jobs", "list", "--data-dir", str(root))
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 3  # type: ignore[index]
    shown = mp_json("jobs", "show", str(longer["job_id"]), "--data-dir", str(root))
    assert shown["partitions"] == 14  # type: ignore[index]
    assert shown["partitions_stored"] == 10 and shown["partitions_completed"] == 4  # type: ignore[index]
    states = Counter(p["state"] for p in shown["partitions_detail"])  # type: ignore[index]
    assert states == {"STORED": 10, "COMPLETED": 4}


def test_update_takes_today_s_settings_and_keeps_only_what_defines_the_series(
    tmp_path: Path,
) -> None:
    """Ingest against one server, split-adjusted; the environment then points elsewhere (a
    new base URL, another rate limit): update calls the new address, for the same series."""
    root = tmp_path / "data"
    with FakeAlpacaServer(KEY, SECRET) as old:
        env = alpaca_env(old, now=AFTER_TUESDAY)
        run(*alpaca(root, "AAPL", "2024-03-04", "2024-03-06", "-o", "adjustment=split",
                    "-o", "rate_limit=50"), env=env)  # fmt: skip
        asked_before = old.stats["requests"]
    with FakeAlpacaServer(KEY, SECRET) as new:
        later = alpaca_env(new, now="2024-03-12T02:00:00Z")
        later["MARKETPIPE_ALPACA_RATE_LIMIT"] = "300"
        update = mp_json("update", "--data-dir", str(root), env=later)
        assert new.stats["requests"] > 0  # today's address, not the first job's
    assert old.stats["requests"] == asked_before
    (series,) = update["series"]  # type: ignore[index]
    assert (series["adjustment"], series["state"]) == ("split", "COMPLETED")
    assert series["job"]["partitions_completed"] == 3  # Mar 7, 8 and 11
    job = mp_json("jobs", "show", series["job"]["job_id"], "--data-dir", str(root))
    settings = job["settings"]  # type: ignore[index]
    assert settings["base_url"] == new.url and settings["rate_limit"] == "300"
    assert settings["adjustment"] == "split"


def test_update_with_a_pinned_clock_fills_exactly_the_missing_sessions_then_does_nothing(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    env = alpaca_env(server, now=AFTER_TUESDAY)
    run(*alpaca(root, "AAPL", "2024-03-04", "2024-03-06"), env=env)
    run(*alpaca(root, "MSFT", "2024-03-07", "2024-03-07"), env=env)

    update = run("update", "--data-dir", str(root), env=env)
    (series,) = update["series"]
    assert (series["provider"], series["adjustment"], series["through"]) == (
        "alpaca",
        "raw",
        "2024-03-12",
    )
    job = series["job"]
    # AAPL from 03-07, MSFT from 03-08, through Tuesday 03-12: 4 + 3 sessions.
    assert job["partitions_completed"] == 7 and job["partitions_stored"] == 4
    fresh = tmp_path / "fresh"
    run(*alpaca(fresh, "AAPL", "2024-03-04", "2024-03-12"), env=env)
    run(*alpaca(fresh, "MSFT", "2024-03-07", "2024-03-12"), env=env)
    assert rows(root) == rows(fresh)

    asked = server.stats["requests"]
    second = run("update", "--data-dir", str(root), env=env)
    assert server.stats["requests"] == asked
    assert second["series"][0]["job"]["partitions_completed"] == 0

    # Ten minutes after Wednesday's close Alpaca's bars are not final yet: nothing is due.
    early = alpaca_env(server, now="2024-03-13T20:10:00+00:00")
    assert run("update", "--data-dir", str(root), env=early)["series"][0]["through"] == (
        "2024-03-12"
    )
    assert server.stats["requests"] == asked


def test_a_day_fetched_before_its_session_closed_is_partial_and_fetched_again(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    args = ["ingest", "--provider", "fake", "--symbols", "AAPL", "--data-dir", str(root)]
    day = ("--start", "2024-03-12", "--end", "2024-03-12")
    during = {"MARKETPIPE_NOW": "2024-03-12T17:00:00+00:00"}  # 13:00 in New York
    assert mp_json(*args, *day, env=during)["partitions_completed"] == 1  # type: ignore[index]
    again = mp_json(*args, *day, env=during)
    assert again["partitions_completed"] == 1 and again["partitions_stored"] == 0  # type: ignore[index]
    after = {"MARKETPIPE_NOW": AFTER_TUESDAY}
    assert mp_json(*args, *day, env=after)["partitions_completed"] == 1  # type: ignore[index]
    assert mp_json(*args, *day, env=after)["partitions_stored"] == 1  # type: ignore[index]
    # --end left out means the last completed session.
    last = mp_json(*args, "--start", "2024-03-11", env=after)
    assert last["partitions"] == 2 and last["partitions_stored"] == 1  # type: ignore[index]


def test_raw_and_split_bars_of_the_same_days_are_two_series_side_by_side(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    # AAPL splits 2-for-1 after the days fetched: split-adjusted prices are half the raw ones.
    server.market = FakeMarket(
        [
            {"type": "forward_splits", "id": "s1", "symbol": "AAPL", "old_rate": 1,
             "new_rate": 2, "ex_date": "2024-03-11", "process_date": "2024-03-01"}
        ]
    )  # fmt: skip
    env = alpaca_env(server)
    raw = run(*alpaca(root, "AAPL", "2024-03-04", "2024-03-05"), env=env)
    split = run(
        *alpaca(root, "AAPL", "2024-03-04", "2024-03-05", "-o", "adjustment=split"), env=env
    )
    assert raw["partitions_completed"] == split["partitions_completed"] == 2
    assert split["partitions_stored"] == 0  # another series: nothing of it was stored
    per_series = duckdb.sql(
        "SELECT adjustment, count(*), round(avg(close), 4) FROM "
        f"read_parquet('{root}/**/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY 1"
    ).fetchall()
    (_, n_raw, close_raw), (_, n_split, close_split) = per_series
    assert [p[0] for p in per_series] == ["raw", "split"] and n_raw == n_split > 700
    assert close_split == pytest.approx(close_raw / 2, rel=1e-6)
    # Re-ingesting raw leaves the split series alone.
    split_rows = rows(root, "adjustment = 'split'")
    run(*alpaca(root, "AAPL", "2024-03-04", "2024-03-05", "--refresh"), env=env)
    assert rows(root, "adjustment = 'split'") == split_rows


def test_a_deleted_file_is_found_by_verify_and_restored_by_update(tmp_path: Path) -> None:
    root = tmp_path / "data"
    env = {"MARKETPIPE_NOW": AFTER_TUESDAY, "MARKETPIPE_FSYNC": "0"}
    base = ["ingest", "--provider", "fake", "--data-dir", str(root)]
    mp_json(
        *base, "--symbols", "AAPL,MSFT", "--start", "2024-03-04", "--end", "2024-03-12", env=env
    )
    ibm = mp_json(
        *base, "--symbols", "IBM", "--start", "2024-03-11", "--end", "2024-03-12", env=env
    )
    before = rows(root)
    assert mp("verify", "--data-dir", str(root), env=env).returncode == 0
    (gone,) = root.glob(f"bars/provider=fake/**/part-{ibm['job_id']}-*.parquet")  # type: ignore[index]
    gone.unlink()  # IBM's two partitions

    out = mp("verify", "--data-dir", str(root), "--json", env=env)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    kinds = sorted(p["kind"] for p in report["problems"])
    assert kinds == ["job-store", "missing-file"]
    assert all(gone.name in p["path"] for p in report["problems"])
    assert (
        "2 partitions (780 bars)"
        in report["problems"][0]["detail"] + report["problems"][1]["detail"]
    )

    update = mp_json("update", "--data-dir", str(root), env=env)
    assert update["series"][0]["job"]["partitions_completed"] == 2  # type: ignore[index]
    assert rows(root) == before
    assert mp("verify", "--data-dir", str(root), env=env).returncode == 0


def test_verify_reports_duplicates_and_footers_that_disagree_with_rows(tmp_path: Path) -> None:
    root = tmp_path / "data"
    base = ["ingest", "--provider", "fake", "--data-dir", str(root)]
    mp_json(*base, "--symbols", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05")
    (only,) = root.glob("bars/provider=fake/**/part-*.parquet")
    shutil.copy(only, only.with_name("part-copy-000000000000.parquet"))
    out = mp("verify", "--data-dir", str(root), "--json")
    assert out.returncode == 1
    problems = json.loads(out.stdout)["problems"]
    dupes = [p for p in problems if p["kind"] == "duplicate"]
    assert len(dupes) == 2 and "AAPL 2024-03-04 has rows in 2 files" in dupes[0]["detail"]
    assert {p["kind"] for p in problems} == {"duplicate"}  # the copy itself is indexed, not news
    # The next ingest of those days commits them again and removes the copy's rows.
    mp_json(*base, "--symbols", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05")
    assert len(rows(root)) == 2 * 390
    assert mp("verify", "--data-dir", str(root)).returncode == 0


def test_a_dataset_written_by_the_previous_release_is_upgraded_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with tarfile.open(HERE / "fixtures" / "dataset-layout-v1.tar.gz") as tar:
        tar.extractall(root, filter="data")
    old = duckdb.sql(
        "SELECT symbol, timestamp, close FROM "
        f"read_parquet('{root}/provider=*/feed=*/timeframe=*/*/*.parquet') ORDER BY ALL"
    ).fetchall()
    assert len(old) == 14 * 390
    job = ["ingest", "--provider", "fake", "--symbols", "AAPL,MSFT", "--data-dir", str(root)]
    first = mp_json(*job, "--start", "2024-03-01", "--end", "2024-03-08")
    assert any("upgraded the dataset" in n and "3 files moved" in n for n in first["notes"])  # type: ignore[index]
    assert first["partitions_stored"] == 12 and first["partitions_completed"] == 0  # type: ignore[index]
    assert not list(root.glob("provider=*"))
    new = duckdb.sql(
        "SELECT symbol, timestamp, close FROM "
        f"read_parquet('{root}/bars/provider=*/feed=*/adjustment=raw/timeframe=*/*/*.parquet') "
        "ORDER BY ALL"
    ).fetchall()
    assert new == old
    second = mp_json(*job, "--start", "2024-02-28", "--end", "2024-03-08")
    assert not any("upgraded" in n for n in second["notes"])  # type: ignore[union-attr]
    assert second["partitions_stored"] == 14  # type: ignore[index]
    assert mp("verify", "--data-dir", str(root)).returncode == 0
    shown = mp_json("jobs", "show", "b0993a48ceb6", "--data-dir", str(root))
    assert all("adjustment=raw" in p["path"] for p in shown["partitions_detail"])  # type: ignore[index]


def test_another_seed_would_mix_two_markets_in_one_series_and_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    job = ["ingest", "--provider", "fake", "--symbols", "AAPL", "--data-dir", str(root)]
    mp_json(*job, "--start", "2024-03-04", "--end", "2024-03-04")
    out = mp(*job, "--start", "2024-03-05", "--end", "2024-03-05", "-o", "seed=9")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "seed=0, not seed=9" in out.stderr and len(out.stderr.strip().splitlines()) == 1


UPDATE_SYMBOLS = ",".join(f"U{i:02d}" for i in range(12))


def _completed(root: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{root / '_marketpipe' / 'jobs.sqlite'}?mode=ro", uri=True)
        try:
            return int(
                db.execute("SELECT count(*) FROM partitions WHERE state='COMPLETED'").fetchone()[0]
            )
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_during_an_update_then_the_same_command_gives_the_identical_dataset(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "MARKETPIPE_NOW": "2024-04-30T21:00:00+00:00"}
    seed = ["ingest", "--provider", "fake", "--symbols", UPDATE_SYMBOLS]
    days = ("--start", "2024-01-02", "--end", "2024-01-05")
    root, reference = tmp_path / "data", tmp_path / "reference"
    mp_json(*seed, *days, "--data-dir", str(root), env=env)
    mp_json(*seed, "--start", "2024-01-02", "--end", "2024-04-30", "--data-dir", str(reference))
    seeded = _completed(root)
    update = [MP, "update", "--data-dir", str(root), "--batch-size", "3000", "--json"]
    rng = random.Random(20261129)
    for mark in sorted(rng.sample(range(100, 900), 3)):
        proc = subprocess.Popen(update, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _completed(root) < seeded + mark:
            assert proc.poll() is None, "the update finished before its kill"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    out = subprocess.run(update, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert rows(root) == rows(reference)
    assert mp("verify", "--data-dir", str(root)).returncode == 0


def test_an_upgrade_interrupted_after_some_files_moved_carries_on(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with tarfile.open(HERE / "fixtures" / "dataset-layout-v1.tar.gz") as tar:
        tar.extractall(root, filter="data")
    # As if killed after the first rename: one file already in the new layout, no marker.
    first = sorted(root.glob("provider=*/feed=*/timeframe=*/*/*.parquet"))[0]
    rel = first.relative_to(root).as_posix()
    moved = root / rel.replace("/timeframe=", "/adjustment=raw/timeframe=")
    moved.parent.mkdir(parents=True)
    first.rename(moved)
    out = mp("verify", "--data-dir", str(root), "--json")
    assert out.returncode == 0, out.stdout
    report = json.loads(out.stdout)
    assert report["partitions"] == 14 and report["bars"] == 14 * 390
    assert any("3 files moved" in n for n in report["notes"])
    db = sqlite3.connect(root / "_marketpipe" / "jobs.sqlite")
    paths = [p for (p,) in db.execute("SELECT path FROM files")]
    assert paths and all(
        p.startswith("bars/") and "/adjustment=raw/timeframe=1m/" in p for p in paths
    )
    assert json.loads(mp("verify", "--data-dir", str(root), "--json").stdout)["notes"] == []


def test_update_of_a_dataset_without_bars_is_one_line(tmp_path: Path) -> None:
    out = mp("update", "--data-dir", str(tmp_path / "empty"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"Error: the dataset in {tmp_path / 'empty'} holds no bars of any series: ingest them "
        "first (mp ingest), then update"
    ]


def as_layout_2(root: Path) -> None:
    """Put a dataset back as the release before ticks wrote it: bars at the root."""
    for folder in (root / "bars").iterdir():
        folder.rename(root / folder.name)
    (root / "bars").rmdir()
    with sqlite3.connect(root / "_marketpipe" / "jobs.sqlite") as db:
        db.execute("UPDATE files SET path = substr(path, 6) WHERE path LIKE 'bars/%'")
    (root / "_marketpipe" / "layout").write_text("2\n")


def test_bars_at_the_root_move_under_bars_on_first_read_and_read_the_same(tmp_path: Path) -> None:
    import marketpipe

    root = tmp_path / "data"
    job = ["ingest", "--provider", "fake", "--symbols", "AAPL,MSFT", "--data-dir", str(root)]
    mp(*job, "--start", "2024-03-04", "--end", "2024-03-08", check=True)
    asked = {"provider": "fake", "symbols": ["AAPL", "MSFT"], "start": "2024-03-04"}
    before = marketpipe.read(root, **asked, end="2024-03-08")
    as_layout_2(root)
    assert len(list(root.glob("provider=fake/*/*/*/*/*.parquet"))) == 1
    after = marketpipe.read(root, **asked, end="2024-03-08")  # the upgrade, then the read
    assert after.equals(before) and after.num_rows == 2 * 5 * 390
    assert not list(root.glob("provider=*")) and len(list(root.glob("bars/**/*.parquet"))) == 1
    db = sqlite3.connect(root / "_marketpipe" / "jobs.sqlite")
    paths = {p for (p,) in db.execute("SELECT path FROM files")}
    assert paths and all(p.startswith("bars/provider=fake/") for p in paths)
    report = mp_json("verify", "--data-dir", str(root))
    assert report["notes"] == [] and report["bars"] == 2 * 5 * 390  # type: ignore[index]
