"""Crash safety with real processes: SIGKILL at random moments, Ctrl-C, concurrent runs."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from cli_helpers import mp, mp_json, wait_for_progress

MP = str(Path(sys.executable).with_name("mp"))
SYMBOLS = ",".join(f"K{i:02d}" for i in range(24))
JOB = [
    "ingest",
    "--provider",
    "fake",
    "--symbols",
    SYMBOLS,
    "--start",
    "2024-01-02",
    "--end",
    "2024-04-30",
    "--batch-size",
    "4000",
    "--concurrency",
    "2",
]


def start(root: Path, *extra: str, job: list[str] = JOB) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MP, *job, "--data-dir", str(root), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(root: Path) -> list[tuple]:
    return duckdb.sql(
        f"SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap FROM "
        f"read_parquet('{root}/**/*.parquet', hive_partitioning=true) ORDER BY symbol, timestamp"
    ).fetchall()


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def store_agrees_with_files(root: Path) -> None:
    db = sqlite3.connect(root / "_marketpipe" / "jobs.sqlite")
    recorded = dict(
        ((s, d), n)
        for s, d, n in db.execute(
            "SELECT symbol, day, bars FROM partitions WHERE state = 'COMPLETED'"
        )
    )
    on_disk = dict(
        ((s, str(d)), n)
        for s, d, n in duckdb.sql(
            f"SELECT symbol, CAST(timestamp AT TIME ZONE 'America/New_York' AS DATE), count(*) "
            f"FROM read_parquet('{root}/**/*.parquet') GROUP BY ALL"
        ).fetchall()
    )
    assert recorded == on_disk


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple], float]:
    root = tmp_path_factory.mktemp("reference") / "data"
    started = time.monotonic()
    out = mp(*JOB, "--data-dir", str(root), "--json", check=True)
    elapsed = time.monotonic() - started
    assert json.loads(out.stdout)["state"] == "COMPLETED"
    return root, rows(root), elapsed


def test_sigkill_at_random_moments_then_resume_gives_the_same_dataset(
    reference: tuple[Path, list[tuple], float], tmp_path: Path
) -> None:
    _, expected, _ = reference
    root = tmp_path / "data"
    rng = random.Random(20261125)
    total = 24 * 82  # symbols x sessions from January to April 2024
    # Two kills while starting up and planning, then ten spread over the work: each run is
    # killed once the job has reached its next random progress mark, a few milliseconds on,
    # so kills land while units are fetched, validated and committed.
    marks = sorted(rng.sample(range(total // 20, total * 17 // 20), 10))
    kills = 0
    for mark in [None, None, *marks]:
        proc = start(root)
        if mark is None:
            time.sleep(rng.uniform(0.05, 0.6))  # start-up: a moment, not an event, is the point
        else:
            wait_for_progress(proc, root, mark)
        # Every kill must land in a running job: one that ended first would make this test
        # pass without testing anything.
        assert proc.poll() is None, "the job ended before its kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills == 12
    final = mp(*JOB, "--data-dir", str(root), "--json")
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["state"] == "COMPLETED"
    jobs = mp_json("jobs", "list", "--data-dir", str(root))
    assert [j["state"] for j in jobs] == ["COMPLETED"]  # every restart resumed the one job
    assert rows(root) == expected  # row for row: nothing lost, nothing twice
    assert temp_files(root) == []
    store_agrees_with_files(root)


def test_ctrl_c_stops_cleanly_and_resume_finishes(
    reference: tuple[Path, list[tuple], float], tmp_path: Path
) -> None:
    _, expected, _ = reference
    root = tmp_path / "data"
    proc = start(root)
    wait_for_progress(proc, root, 24 * 82 // 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with: mp jobs resume" in err
    job_id = json.loads(out)["job_id"]
    assert mp_json("jobs", "list", "--data-dir", str(root))[0]["state"] == "CANCELLED"  # type: ignore[index]
    assert temp_files(root) == []
    store_agrees_with_files(root)
    resumed = mp("jobs", "resume", job_id, "--data-dir", str(root), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["partitions_skipped"] > 0
    assert rows(root) == expected


def test_a_second_ctrl_c_exits_at_once_without_a_torn_file(
    reference: tuple[Path, list[tuple], float], tmp_path: Path
) -> None:
    _, expected, _ = reference
    root = tmp_path / "data"
    proc = start(root)
    wait_for_progress(proc, root, 24 * 82 // 3)
    proc.send_signal(signal.SIGINT)
    # The second Ctrl-C once the first has been taken (its "Stopping" line), not after a guess.
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while "Stopping" not in proc.stderr.readline():
        assert time.monotonic() < deadline and proc.poll() is None
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    # 130 from our handler, or death by SIGINT when the second one lands while the interpreter
    # is already exiting (it restores the default handler then): a shell shows 130 for both.
    assert proc.returncode in (130, -signal.SIGINT)
    rows(root)  # every committed file reads back
    final = mp(*JOB, "--data-dir", str(root), "--json")
    assert final.returncode == 0, final.stderr
    assert rows(root) == expected and temp_files(root) == []


def test_overlapping_runs_are_refused_and_separate_ones_run_side_by_side(tmp_path: Path) -> None:
    root = tmp_path / "data"
    # A long job (60 symbols x a year in small units) so the checks below run while it does.
    long_job = [
        *JOB[:4],
        ",".join(f"K{i:02d}" for i in range(60)),
        "--start",
        "2024-01-02",
        "--end",
        "2024-12-31",
        "--batch-size",
        "2000",
        "--concurrency",
        "1",
    ]
    first = start(root, job=long_job)
    deadline = time.monotonic() + 30
    while not (root / "_marketpipe" / "locks").is_dir() or not list(
        (root / "_marketpipe" / "locks").glob("job=*.lock")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    wait_for_progress(first, root, 1)
    running = mp_json("jobs", "list", "--data-dir", str(root))[0]  # type: ignore[index]
    refused_cancel = mp("jobs", "cancel", running["id"], "--data-dir", str(root))
    assert refused_cancel.returncode == 2 and "is running in process" in refused_cancel.stderr
    overlapping = mp(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "K03",
        "--start",
        "2024-02-01",
        "--end",
        "2024-02-29",
        "--data-dir",
        str(root),
    )
    separate = mp(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "OTHER",
        "--start",
        "2024-02-01",
        "--end",
        "2024-02-29",
        "--data-dir",
        str(root),
        "--json",
    )
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert overlapping.returncode == 75  # try again later: nothing for a person to fix
    assert "is ingesting overlapping partitions" in overlapping.stderr
    assert separate.returncode == 0, separate.stderr
    counts = dict(
        duckdb.sql(
            f"SELECT symbol, count(*) FROM read_parquet('{root}/**/*.parquet') "
            "WHERE symbol IN ('K03', 'OTHER') GROUP BY ALL"
        ).fetchall()
    )
    assert counts["OTHER"] == 20 * 390 and counts["K03"] > counts["OTHER"]
    states = sorted(j["state"] for j in mp_json("jobs", "list", "--data-dir", str(root)))  # type: ignore[union-attr]
    assert states == ["COMPLETED", "COMPLETED"]  # the refused job was never recorded


def test_jobs_cancel_marks_an_interrupted_job_and_refuses_a_finished_one(tmp_path: Path) -> None:
    root = tmp_path / "data"
    proc = start(root)
    wait_for_progress(proc, root, 24 * 82 // 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    job = mp_json("jobs", "list", "--data-dir", str(root))[0]  # type: ignore[index]
    assert job["state"] == "INTERRUPTED"  # killed: recorded as running, but no lock held
    cancelled = mp_json("jobs", "cancel", job["id"], "--data-dir", str(root))
    assert cancelled == {"id": job["id"], "state": "CANCELLED"}
    again = mp("jobs", "cancel", job["id"], "--data-dir", str(root))
    assert again.returncode == 2 and "already CANCELLED" in again.stderr


def test_events_are_logged_in_order_as_json_lines(tmp_path: Path) -> None:
    root = tmp_path / "data"
    summary = mp_json(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "AAPL,MSFT",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-06",
        "--data-dir",
        str(root),
    )
    shown = mp_json("jobs", "show", summary["job_id"], "--data-dir", str(root))  # type: ignore[index]
    lines = [json.loads(line) for line in Path(shown["event_log"]).read_text().splitlines()]  # type: ignore[index]
    names = [e["event"] for e in lines]
    assert names[:2] == ["IngestionJobStarted", "IngestionJobPlanned"]
    assert names[-1] == "IngestionJobCompleted"
    assert lines[0]["symbol"] is None  # the job's own start; then one line per unit
    assert names.count("IngestionBatchProcessed") == 6 and names.count("IngestionJobStarted") == 1
    units = [e for e in lines if e["event"] == "IngestionUnitStarted"]
    assert sum(u["partitions"] for u in units) == 6 and units[0]["symbols"] == ["AAPL", "MSFT"]
    processed = [e for e in lines if e["event"] == "IngestionBatchProcessed"]
    assert {e["symbol"] for e in processed} == {"AAPL", "MSFT"}
    assert all(e["bars_count"] == 390 and e["partition"]["path"] for e in processed)
    assert os.path.getsize(shown["event_log"]) > 0  # type: ignore[index]


def test_metrics_are_served_while_the_job_runs_and_the_counters_move(tmp_path: Path) -> None:
    import re
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start(tmp_path / "data", "--metrics-port", str(port))
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        match = re.search(r'^marketpipe_bars_written_total\{provider="fake"\} (\S+)$', text, re.M)
        if match:
            seen.append(float(match.group(1)))
            if seen[-1] > 0:  # a unit committed: its commit time was observed too
                assert "marketpipe_unit_commit_seconds_bucket" in text
        time.sleep(0.1)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    # Scraped mid-run, twice after the first commit (a scrape before it reads 0), moving.
    moving = [v for v in seen if v > 0]
    assert seen == sorted(seen) and len(moving) >= 2 and moving[-1] > moving[0]
