"""``mp ingest --provider iex`` run as a user runs it: offline from --source, and against a local
HIST server, including a download killed half-way and resumed."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from iex_days import SYMBOLS, day_messages, write_day, write_days
from iex_encoder import ns
from marketpipe_iex.testing import FakeHistServer, Faults, ServedFile

DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5)]


def mp(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mp")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)


def regular_volume(day: dt.date, **options: int) -> dict[str, int]:
    """Volume per symbol inside the regular session, straight from the encoded messages."""
    open_, close = ns(day, "09:30"), ns(day, "16:00")
    out = dict.fromkeys(SYMBOLS, 0)
    for message in day_messages(day, **options):
        if message and message[:1] == b"T":
            _, _, ts, symbol, size, _, _ = struct.unpack("<cBq8sIqq", message)
            if open_ <= ts < close:
                out[symbol.decode().strip()] += size
    return out


def volumes(root: Path) -> dict[tuple[str, str], int]:
    rows = duckdb.sql(
        f"""SELECT symbol, CAST(timestamp AT TIME ZONE 'America/New_York' AS DATE)::VARCHAR AS day,
        sum(volume) FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true)
        GROUP BY ALL"""
    ).fetchall()
    return {(s, d): int(v) for s, d, v in rows}


def test_offline_all_symbols_from_the_files_alone(tmp_path: Path) -> None:
    write_days(tmp_path / "caps", DAYS)
    out = mp(
        "ingest",
        "--provider",
        "iex",
        "--source",
        str(tmp_path / "caps"),
        "--all-symbols",
        "--data-dir",
        str(tmp_path / "data"),
        "-o",
        f"cache_dir={tmp_path / 'cache'}",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["state"] == "COMPLETED" and summary["rejected_rows"] == 0
    assert summary["partitions"] == len(SYMBOLS) * len(DAYS) and summary["notes"] == []
    got = volumes(tmp_path / "data")
    for day in DAYS:
        for symbol, volume in regular_volume(day).items():
            assert got[(symbol, day.isoformat())] == volume
    nulls = duckdb.sql(
        f"SELECT count(*) FILTER (WHERE open IS NULL), count(*) FILTER (WHERE open IS NULL AND "
        f"(high IS NOT NULL OR close IS NOT NULL OR volume = 0)) FROM "
        f"read_parquet('{tmp_path / 'data'}/**/*.parquet')"
    ).fetchall()[0]
    assert nulls[0] > 0 and nulls[1] == 0  # odd-lot minutes, prices all null
    feeds = duckdb.sql(
        f"SELECT DISTINCT provider, feed FROM read_parquet('{tmp_path / 'data'}/**/*.parquet', "
        "hive_partitioning=true)"
    ).fetchall()
    assert feeds == [("iex", "tops")]


def test_the_source_setting_alone_gives_the_days(tmp_path: Path) -> None:
    write_days(tmp_path / "caps", DAYS)
    out = mp(
        "ingest",
        "--provider",
        "iex",
        "-o",
        f"source={tmp_path / 'caps'}",
        "--symbols",
        "AAPL",
        "--data-dir",
        str(tmp_path / "data"),
        "-o",
        f"cache_dir={tmp_path / 'cache'}",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["partitions"] == len(DAYS)


def test_a_download_killed_half_way_resumes(tmp_path: Path) -> None:
    (tmp_path / "caps").mkdir()
    capture = write_day(tmp_path / "caps", DAYS[0], trades_per_symbol=6000)
    assert capture.stat().st_size > 200_000
    cache, data = tmp_path / "cache", tmp_path / "data"
    part = cache / "hist" / "20240304_IEXTP1_TOPS1.6.pcap.gz.part"
    faults = Faults(bytes_per_second=150_000)
    with FakeHistServer([ServedFile(capture, DAYS[0])], faults) as server:
        args = [
            "ingest",
            "--provider",
            "iex",
            "--symbols",
            "AAPL,MSFT",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-04",
            "--data-dir",
            str(data),
            "-o",
            f"base_url={server.base_url}",
            "-o",
            f"cache_dir={cache}",
            "--json",
        ]
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mp")), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 40_000) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        had = part.stat().st_size
        assert 0 < had < capture.stat().st_size
        faults.bytes_per_second = None
        out = mp(*args)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["state"] == "COMPLETED" and summary["resumed"] is True
        ranges = [r for p, r in server.requests if p.startswith("/download/")]
    assert ranges[0] is None and ranges[-1] == f"bytes={had}-"
    assert (cache / "hist" / part.name.removesuffix(".part")).read_bytes() == capture.read_bytes()
    got = volumes(data)
    expected = regular_volume(DAYS[0], trades_per_symbol=6000)
    assert got == {(s, "2024-03-04"): expected[s] for s in ("AAPL", "MSFT")}


def test_a_day_without_a_file_fails_its_partitions_saying_why(tmp_path: Path) -> None:
    capture = write_day(tmp_path, DAYS[0])
    with FakeHistServer([ServedFile(capture, DAYS[0])]) as server:
        out = mp(
            "ingest",
            "--provider",
            "iex",
            "--symbols",
            "AAPL",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-05",
            "--data-dir",
            str(tmp_path / "data"),
            "-o",
            f"base_url={server.base_url}",
            "-o",
            f"cache_dir={tmp_path / 'cache'}",
            "--json",
        )
    assert out.returncode == 1
    summary = json.loads(out.stdout)
    assert summary["partitions_completed"] == 1
    assert [f["day"] for f in summary["failures"]] == ["2024-03-05"]
    assert "IEX HIST has no TOPS file for 2024-03-05" in summary["failures"][0]["error"]


def test_a_truncated_capture_is_in_the_summary(tmp_path: Path) -> None:
    (tmp_path / "caps").mkdir()
    capture = write_day(tmp_path / "caps", DAYS[0])
    plain = gzip.decompress(capture.read_bytes())
    capture.write_bytes(plain[: len(plain) - 100])
    out = mp(
        "ingest",
        "--provider",
        "iex",
        "--source",
        str(capture),
        "--symbols",
        "AAPL",
        "--data-dir",
        str(tmp_path / "data"),
        "-o",
        f"cache_dir={tmp_path / 'cache'}",
    )
    assert out.returncode == 0, out.stderr
    assert "Note:" in out.stdout + out.stderr and "truncated" in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/nonexistent/*.gz", "--all-symbols"], "matches no file"),
        (["--all-symbols", "--symbols", "AAPL", "--source", "."], "either --symbols"),
        (["--symbols", "AAPL"], "give the days to ingest"),
        (["--symbols", "AAPL", "--end", "2024-03-04"], "--end needs --start"),
    ],
)
def test_user_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    out = mp("ingest", "--provider", "iex", "--data-dir", str(tmp_path), *args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_trades_and_quotes_live_in_their_own_trees_and_rebuild_the_captures_bars(
    tmp_path: Path,
) -> None:
    caps, data = tmp_path / "caps", tmp_path / "data"
    write_days(caps, DAYS, breaks=40)
    base = ("--provider", "iex", "--source", str(caps), "--all-symbols", "--session", "extended",
            "--data-dir", str(data), "-o", f"cache_dir={tmp_path / 'cache'}", "--json")  # fmt: skip
    printed = [m for d in DAYS for m in day_messages(d, breaks=40) if m and m[:1] == b"T"]
    broken = {
        (d.isoformat(), struct.unpack("<cBq8sIqq", m)[6])
        for d in DAYS
        for m in day_messages(d, breaks=40)
        if m and m[:1] == b"B"
    }
    quoted = [m for d in DAYS for m in day_messages(d, breaks=40) if m and m[:1] == b"Q"]
    for kind, count in (("trades", len(printed)), ("quotes", len(quoted))):
        out = mp("ingest", *base, "--kind", kind)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert (summary["kind"], summary["state"], summary["bars"]) == (kind, "COMPLETED", count)
        assert summary["rejected_rows"] == 0
    bars = json.loads(mp("ingest", *base).stdout)
    assert sorted(p.name for p in data.iterdir()) == ["_marketpipe", "bars", "quotes", "trades"]
    # Readers of a kind's tree meet that kind only: the bars' glob holds every bar and no tick.
    held = duckdb.sql(f"SELECT count(*) FROM read_parquet('{data}/bars/**/*.parquet')")
    assert held.fetchall() == [(bars["bars"],)]
    trades = duckdb.sql(
        f"""SELECT CAST(timestamp AT TIME ZONE 'America/New_York' AS DATE)::VARCHAR, id,
        correction, size FROM read_parquet('{data}/trades/**/*.parquet', hive_partitioning=true)
        WHERE provider = 'iex' AND feed = 'tops'"""
    ).fetchall()
    assert len(trades) == len(printed) and broken
    assert {(d, int(i)) for d, i, c, _ in trades if c == "canceled"} == broken
    assert sum(s for *_, s in trades) == sum(struct.unpack("<cBq8sIqq", m)[4] for m in printed)
    out = mp("resample", "--from", "trades", "--to", "1m", "--data-dir", str(data), "--json")
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)
    assert result["target"] == "iex/tops-from-trades/raw/1m" and result["bars_out"] == bars["bars"]
    pair = [
        duckdb.sql(
            "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap FROM "
            f"read_parquet('{data}/bars/provider=iex/feed={feed}/adjustment=raw/timeframe=1m/"
            "*/*.parquet') ORDER BY symbol, timestamp"
        ).fetchall()
        for feed in ("tops", "tops-from-trades")
    ]
    assert pair[0] == pair[1]  # a canceled trade counted for neither
    assert mp("verify", "--data-dir", str(data)).returncode == 0
    read = mp("read", "--provider", "iex", "--symbols", "AAPL", "--kind", "trades", "--start",
              "2024-03-04", "--end", "2024-03-04", "--data-dir", str(data), "--format", "json")  # fmt: skip
    rows = json.loads(read.stdout)["trades"]
    day_one = [d for d, *_ in trades if d == "2024-03-04"]
    assert len(rows) == sum(1 for r in rows if r["symbol"] == "AAPL") > 0
    assert len(rows) < len(day_one) and [r["correction"] for r in rows].count("canceled") > 0
    assert rows[0]["timestamp"].endswith("+00:00") and "." in rows[0]["timestamp"]
