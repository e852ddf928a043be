"""Nightly updates nobody watches: rate limits that say nothing, a provider that stalls or goes
away, signals from cron and systemd, and the exit codes and output a scheduler reads. The CLI
runs as a user runs it, against the local Alpaca server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from marketpipe_alpaca.testing import FakeAlpacaServer

KEY, SECRET = "PKUNATTENDED0001", "SKUNATTENDED0002"
MP = str(Path(sys.executable).with_name("mp"))
TWELVE = "AAPL,MSFT,NVDA,AMZN,GOOG,META,TSLA,AMD,INTC,IBM,ORCL,CSCO"
# A Thursday evening after the close: the last session of March 2024 (the 29th is Good
# Friday) is final.
NOW = "2024-03-28T23:00:00+00:00"


def alpaca_env(server: FakeAlpacaServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "MARKETPIPE_"))}
    env.update(
        {
            "APCA_API_KEY_ID": KEY,
            "APCA_API_SECRET_KEY": SECRET,
            "MARKETPIPE_ALPACA_BASE_URL": server.url,
            "MARKETPIPE_FSYNC": "0",
            "MARKETPIPE_NOW": NOW,
            **extra,
        }
    )
    return env


def mp(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MP, *args], capture_output=True, text=True, env=env, timeout=timeout)


def ingest(root: Path, symbols: str, start: str, end: str, *extra: str) -> list[str]:
    return [
        "ingest", "--provider", "alpaca", "--symbols", symbols, "--start", start, "--end", end,
        "--data-dir", str(root), *extra,
    ]  # fmt: skip


def rows(root: Path) -> list[tuple]:
    return duckdb.sql(
        "SELECT symbol, timestamp, open, high, low, close, volume FROM "
        f"read_parquet('{root}/bars/provider=*/**/*.parquet') ORDER BY ALL"
    ).fetchall()


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".part"))]


@pytest.fixture
def clean_rows(tmp_path: Path) -> Iterator[list[tuple]]:
    """March 2024 of AAPL and MSFT, fetched from a server with nothing wrong."""
    with FakeAlpacaServer(KEY, SECRET) as server:
        root = tmp_path / "clean"
        out = mp(*ingest(root, "AAPL,MSFT", "2024-03-01", "2024-03-28"), env=alpaca_env(server))
        assert out.returncode == 0, out.stderr
        yield rows(root)


def test_bare_429s_teach_the_job_the_servers_pace_with_few_rejections(tmp_path: Path) -> None:
    # The server takes 20 requests a window and says nothing when it refuses; the job is set
    # for 1,000 a window with 8 units in flight (the case, in 2-second windows).
    with FakeAlpacaServer(KEY, SECRET, rate_limit=20, window_seconds=2, hints=False) as server:
        root = tmp_path / "data"
        out = mp(
            *ingest(root, TWELVE, "2024-01-02", "2024-03-28", "--batch-size", "2000"),
            "--concurrency", "8", "-o", "rate_limit=1000", "-o", "rate_limit_window=2", "--json",
            env=alpaca_env(server),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["state"] == "COMPLETED" and summary["partitions_failed"] == 0
        assert summary["partitions_completed"] == 12 * 61  # every session of the quarter
        assert summary["bars"] == len(rows(root))
        assert server.stats["requests"] > 60  # enough windows for the pace to matter
        # Three bursts in a row at one count to learn it (random faults never teach), then a
        # burst now and then where a raise probes upward: a few dozen of 1,000+ requests.
        assert 1 <= server.stats["429_limit"] <= 40
        assert "answered 429 without saying when to retry" in out.stderr


def test_a_stalled_provider_ends_the_job_at_its_deadline_resumable_exit_75(
    tmp_path: Path, clean_rows: list[tuple]
) -> None:
    root = tmp_path / "data"
    with FakeAlpacaServer(KEY, SECRET, fault_rate=1.0, faults=("slow",), slow_seconds=60) as stall:
        started = time.monotonic()
        out = mp(*ingest(root, "AAPL,MSFT", "2024-03-01", "2024-03-28"), "--deadline", "3s",
                 env=alpaca_env(stall))  # fmt: skip
        took = time.monotonic() - started
    assert out.returncode == 75, out.stderr
    assert took < 30  # the server would have held each answer a minute
    assert "The deadline passed with 40 partitions not fetched" in out.stdout
    assert "Traceback" not in out.stderr
    with FakeAlpacaServer(KEY, SECRET) as server:
        jobs = json.loads(mp("jobs", "list", "--data-dir", str(root), "--json",
                             env=alpaca_env(server)).stdout)  # fmt: skip
        assert [j["state"] for j in jobs] == ["FAILED"]
        resumed = mp("jobs", "resume", jobs[0]["id"], "--data-dir", str(root),
                     env=alpaca_env(server))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert rows(root) == clean_rows and temp_files(root) == []


def test_an_outage_is_exit_75_and_the_next_night_catches_up(
    tmp_path: Path, clean_rows: list[tuple]
) -> None:
    root = tmp_path / "data"
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server)
        first = mp(*ingest(root, "AAPL,MSFT", "2024-03-01", "2024-03-15"), env=env)
        assert first.returncode == 0, first.stderr
        server.down = True  # every connection dropped unanswered
        # Given up on sooner than the five minutes a request has by default.
        hurried = {**env, "MARKETPIPE_HTTP_RETRY_SECONDS": "3"}
        night = mp("update", "--data-dir", str(root), "--quiet", env=hurried)
        assert night.returncode == 75, night.stderr
        assert night.stdout == ""
        problems = night.stderr.strip().splitlines()
        assert len(problems) == 1 and "alpaca connection failed" in problems[0], problems
        server.down = False
        after = mp("update", "--data-dir", str(root), "--quiet", env=env)
        assert after.returncode == 0, after.stderr
        assert after.stdout == "" and after.stderr == ""  # a night with nothing to report
    assert rows(root) == clean_rows


def test_update_exit_codes_tell_a_person_from_tomorrow(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server)
        assert mp(*ingest(root, "AAPL", "2024-03-01", "2024-03-08"), env=env).returncode == 0
        wrong = mp("update", "--data-dir", str(root), "--quiet",
                   env={**env, "APCA_API_SECRET_KEY": "SKWRONG"})  # fmt: skip
        assert wrong.returncode == 2  # keys: a person must fix them
        assert "SKWRONG" not in wrong.stdout + wrong.stderr
        assert "403" in wrong.stderr or "forbidden" in wrong.stderr.lower()
        bad = mp("update", "--data-dir", str(root), "--deadline", "soon", env=env)
        assert bad.returncode == 2 and "--deadline must be a positive duration" in bad.stderr
        for retry in ("soon", "0", "inf"):
            bad = mp("update", "--data-dir", str(root), "--quiet",
                     env={**env, "MARKETPIPE_HTTP_RETRY_SECONDS": retry})  # fmt: skip
            assert bad.returncode == 2, bad
            assert bad.stderr.strip().splitlines() == [
                "alpaca/iex/raw/1m: MARKETPIPE_HTTP_RETRY_SECONDS must be a positive number of "
                f"seconds, got {retry!r}"
            ]


def test_sigterm_during_a_nightly_update_stops_within_two_seconds(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server)
        assert mp(*ingest(root, "AAPL,MSFT", "2024-03-01", "2024-03-08"), env=env).returncode == 0
        server.fault_rate, server.faults, server.slow_seconds = 1.0, ("slow",), 30.0
        proc = subprocess.Popen(
            [MP, "update", "--data-dir", str(root), "--quiet"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while server.stats["fault_slow"] == 0:  # a request is being held by the server
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 2.0
        assert proc.returncode == 130, err
        assert temp_files(root) == []
        server.fault_rate = 0.0
        again = mp("update", "--data-dir", str(root), "--quiet", env=env)
        assert again.returncode == 0, again.stderr
