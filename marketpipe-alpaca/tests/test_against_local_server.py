"""The Alpaca provider against FakeAlpacaServer: real sockets on 127.0.0.1, the CLI as a user runs it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from marketpipe.fetch import client as base_client_module
from marketpipe.ingestion import DomainEvent, Session, Symbol, Timeframe, TimeRange
from marketpipe.jobs.event_bus import EventBus
from marketpipe.run.pipeline import IngestRequest, run_ingest
from marketpipe.testing import check_provider
from marketpipe_alpaca.fake_market import FakeMarket
from marketpipe_alpaca.testing import FakeAlpacaServer

KEY, SECRET = "PKLEAKCHECK7Q2W9", "SKLEAKCHECK3Z8X1V"
MP = str(Path(sys.executable).with_name("mp"))


def mp(
    *args: str,
    server: FakeAlpacaServer,
    extra_env: dict[str, str] | None = None,
    key: str = KEY,
    secret: str = SECRET,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "MARKETPIPE_ALPACA"))}
    env.update(
        {
            "APCA_API_KEY_ID": key,
            "APCA_API_SECRET_KEY": secret,
            "MARKETPIPE_ALPACA_BASE_URL": server.url,
            "MARKETPIPE_ALPACA_TIMEOUT": "5",
        }
    )
    env.update(extra_env or {})
    return subprocess.run([MP, *args], capture_output=True, text=True, env=env, timeout=300)


def bars(root: Path) -> list[tuple]:
    return duckdb.sql(
        f"SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap "
        f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true) ORDER BY ALL"
    ).fetchall()


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(KEY, SECRET) as s:
        yield s


@pytest.fixture(autouse=True)
def _isolated(fresh_plugins: None) -> None:
    """Each test loads the installed plugins afresh (MarketPipe's pytest plugin)."""


def test_passes_the_conformance_kit(server: FakeAlpacaServer) -> None:
    server.market = FakeMarket(
        [
            {"type": "forward_splits", "id": "s", "symbol": "AAPL", "old_rate": 1,
             "new_rate": 4, "ex_date": "2024-03-06", "process_date": "2024-03-01"},
            {"type": "name_changes", "id": "n", "old_symbol": "MDGN+", "new_symbol": "MDGN",
             "process_date": "2024-03-07"},
            {"type": "cash_dividends", "id": "d", "symbol": "MSFT", "rate": 0.5,
             "ex_date": "2024-03-05", "process_date": "2024-03-01"},
        ]
    )  # fmt: skip
    settings = {"api_key_id": KEY, "api_secret_key": SECRET, "base_url": server.url}
    report = check_provider("alpaca", settings=settings, symbols=("AAPL", "BRK.B", "MDGN+"))
    assert report.requests == 16 and report.bars > 0  # (6 timeframes, trades, quotes) x 2
    assert report.actions == 2  # MSFT's dividend was not asked for


def test_ingest_with_20_percent_faults_equals_the_fault_free_run(tmp_path: Path) -> None:
    args = [
        "ingest",
        "--provider",
        "alpaca",
        "--symbols",
        "AAPL,MSFT,BRK.B,MDGN+",
        "--start",
        "2024-01-25",
        "--end",
        "2024-02-06",
        "--session",
        "extended",
        "--batch-size",
        "5000",
        "--concurrency",
        "4",
        "--json",
    ]
    with FakeAlpacaServer(KEY, SECRET) as clean:
        first = mp(*args, "--data-dir", str(tmp_path / "clean"), server=clean)
    with FakeAlpacaServer(KEY, SECRET, fault_rate=0.2, slow_seconds=0.2, seed=7) as faulty:
        second = mp(*args, "--data-dir", str(tmp_path / "faulty"), server=faulty)
        faults = sum(v for k, v in faulty.stats.items() if k.startswith("fault_"))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert faults >= 3, faulty.stats
    assert json.loads(first.stdout)["bars"] == json.loads(second.stdout)["bars"] > 15_000
    assert bars(tmp_path / "clean") == bars(tmp_path / "faulty")
    assert "retry" in second.stderr  # retries are logged, as warnings


def test_regular_session_keeps_only_the_calendar_session(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    out = mp(
        "ingest",
        "--provider",
        "alpaca",
        "--symbols",
        "AAPL",
        "--start",
        "2024-11-29",
        "--end",
        "2024-11-29",
        "--data-dir",
        str(tmp_path),
        "--json",
        server=server,
    )
    assert out.returncode == 0, out.stderr
    hours = duckdb.sql(
        f"SELECT min(timestamp AT TIME ZONE 'America/New_York')::TIME, "
        f"max(timestamp AT TIME ZONE 'America/New_York')::TIME "
        f"FROM read_parquet('{tmp_path}/**/*.parquet')"
    ).fetchall()
    assert str(hours[0][0]) >= "09:30:00" and str(hours[0][1]) < "13:00:00"  # early close


def test_daily_bars_land_on_their_new_york_day(server: FakeAlpacaServer, tmp_path: Path) -> None:
    out = mp(
        "ingest",
        "--provider",
        "alpaca",
        "--symbols",
        "AAPL,MSFT",
        "--start",
        "2024-03-08",
        "--end",
        "2024-03-12",
        "--timeframe",
        "1d",
        "--data-dir",
        str(tmp_path),
        "--json",
        server=server,
    )
    assert out.returncode == 0, out.stderr
    days = duckdb.sql(
        f"SELECT DISTINCT CAST(timestamp AT TIME ZONE 'America/New_York' AS DATE)::VARCHAR "
        f"FROM read_parquet('{tmp_path}/**/*.parquet') ORDER BY 1"
    ).fetchall()
    assert [d[0] for d in days] == ["2024-03-08", "2024-03-11", "2024-03-12"]  # across DST
    assert server.stats["requests"] == 1  # both symbols in one multi-symbol request


def test_wrong_keys_give_one_line_naming_the_variables(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    out = mp(
        "ingest",
        "--provider",
        "alpaca",
        "--symbols",
        "AAPL,MSFT",
        "--start",
        "2024-01-02",
        "--end",
        "2024-06-28",
        "--data-dir",
        str(tmp_path),
        server=server,
        secret="wrong",
    )
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "APCA_API_KEY_ID and APCA_API_SECRET_KEY" in errors[0]
    assert "Traceback" not in out.stderr
    # Six month units, two in flight: the job stopped asking after the first refusals.
    assert server.stats["status_403"] <= 2


def test_missing_keys_are_named_before_anything_runs(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "MARKETPIPE_ALPACA"))}
    out = subprocess.run(
        [
            MP,
            "ingest",
            "--provider",
            "alpaca",
            "--symbols",
            "AAPL",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-04",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    assert "APCA_API_KEY_ID" in out.stderr and "APCA_API_SECRET_KEY" in out.stderr
    providers = json.loads(
        subprocess.run([MP, "providers", "--json"], capture_output=True, text=True, env=env).stdout
    )["providers"]
    alpaca = next(p for p in providers if p["name"] == "alpaca")
    assert alpaca["available"] is False and "APCA_API_KEY_ID" in alpaca["missing"]


def test_recent_sip_data_is_an_entitlement_error_without_fallback(tmp_path: Path) -> None:
    with FakeAlpacaServer(KEY, SECRET, sip_delay_minutes=10 * 365 * 24 * 60) as server:
        out = mp(
            "ingest",
            "--provider",
            "alpaca",
            "--symbols",
            "AAPL",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-05",
            "--feed",
            "sip",
            "--data-dir",
            str(tmp_path),
            server=server,
        )
    assert out.returncode == 2
    assert "use --feed iex, or end the range at least 15 minutes ago" in out.stderr
    assert not list(tmp_path.rglob("*.parquet"))  # nothing fetched from another feed


def test_pacing_draws_no_429_from_a_limited_server(tmp_path: Path) -> None:
    # Hourly bars keep every answer small, so the server's clock reads arrivals promptly; a
    # one-symbol batch size makes one request per symbol and month: 24 requests, 8 per 2 s.
    with FakeAlpacaServer(KEY, SECRET, rate_limit=8, window_seconds=2.0) as server:
        out = mp(
            "ingest",
            "--provider",
            "alpaca",
            "--symbols",
            "AAPL,MSFT,SPY,QQQ",
            "--start",
            "2024-01-02",
            "--end",
            "2024-06-28",
            "--timeframe",
            "1h",
            "--batch-size",
            "100",
            "--concurrency",
            "4",
            "--data-dir",
            str(tmp_path),
            "--json",
            server=server,
            extra_env={
                "MARKETPIPE_ALPACA_RATE_LIMIT": "8",
                "MARKETPIPE_ALPACA_RATE_LIMIT_WINDOW": "2",
            },
        )
    assert out.returncode == 0, out.stderr
    assert server.stats["requests"] >= 20
    assert server.stats["429_limit"] == 0


def test_a_provider_that_stays_unavailable_fails_the_partitions_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base_client_module, "backoff", lambda *a, **k: 0.01)
    with FakeAlpacaServer(KEY, SECRET, fault_rate=1.0, faults=("503",)) as server:
        request = IngestRequest(
            provider="alpaca",
            symbols=(Symbol("AAPL"),),
            time_range=TimeRange.single_day("2024-03-04"),
            data_dir=tmp_path,
            overrides={"api_key_id": KEY, "api_secret_key": SECRET, "base_url": server.url},
        )
        summary = asyncio.run(run_ingest(request))
    from prometheus_client import REGISTRY

    assert summary.state.value == "FAILED" and summary.aborted is None
    sample = REGISTRY.get_sample_value
    assert sample("marketpipe_requests_total", {"provider": "alpaca", "status": "503"}) >= 6
    assert sample("marketpipe_retries_total", {"provider": "alpaca"}) >= 5
    assert sample("marketpipe_partitions_total", {"provider": "alpaca", "state": "FAILED"}) >= 1
    assert "ProviderUnavailableError" in summary.failures[0].error
    assert "HTTP 503" in summary.failures[0].error


def test_secrets_never_leak_anywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outputs: list[str] = []
    with FakeAlpacaServer(KEY, SECRET, fault_rate=0.3, slow_seconds=0.1, seed=3) as server:
        for extra in ([], ["-o", f"api_key_id={KEY}", "-o", f"api_secret_key={SECRET}"]):
            out = mp(
                "ingest",
                "--provider",
                "alpaca",
                "--symbols",
                "AAPL,MSFT",
                "--start",
                "2024-03-04",
                "--end",
                "2024-03-06",
                "--data-dir",
                str(tmp_path / "d"),
                *extra,
                server=server,
                key="x" if extra else KEY,
                secret="y" if extra else SECRET,
            )
            outputs += [out.stdout, out.stderr]
            assert out.returncode == 0, out.stderr
        wrong = mp(
            "ingest",
            "--provider",
            "alpaca",
            "--symbols",
            "AAPL",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-04",
            "--data-dir",
            str(tmp_path / "d"),
            "--refresh",  # the day is stored: ask again, with the wrong secret
            "-o",
            f"api_key_id={KEY}",
            server=server,
            secret=SECRET + "-WRONG",
        )
        outputs += [wrong.stdout, wrong.stderr]
        for command in (["jobs", "list", "--json"], ["providers", "--json"], ["plugins"]):
            listing = (
                mp(*command, "--data-dir", str(tmp_path / "d"), server=server)
                if command[0] == "jobs"
                else mp(*command, server=server)
            )
            outputs += [listing.stdout, listing.stderr]
        for job in json.loads(outputs[-6]):
            shown = mp(
                "jobs",
                "show",
                job["id"],
                "--data-dir",
                str(tmp_path / "d"),
                "--json",
                server=server,
            )
            outputs += [shown.stdout, shown.stderr]
        # In-process, with every event and log record kept.
        events: list[DomainEvent] = []
        bus = EventBus()
        bus.subscribe(DomainEvent, events.append)
        caplog.set_level(logging.DEBUG)
        asyncio.run(
            run_ingest(
                IngestRequest(
                    provider="alpaca",
                    symbols=(Symbol("AAPL"),),
                    time_range=TimeRange.single_day("2024-03-04"),
                    data_dir=tmp_path / "d",
                    session=Session.EXTENDED,
                    timeframe=Timeframe.M1,
                    overrides={"api_key_id": KEY, "api_secret_key": SECRET, "base_url": server.url},
                ),
                bus,
            )
        )
    assert wrong.returncode == 2
    texts = outputs + [repr(e) for e in events] + [r.getMessage() for r in caplog.records]
    files = [p for p in (tmp_path / "d").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(
        p.name == "jobs.sqlite" for p in files
    )
    for secret in (KEY, SECRET):
        assert not [t for t in texts if secret in t]
        assert not [p for p in files if secret.encode() in p.read_bytes()]


def test_seed_adapter_returns_bar_objects(server: FakeAlpacaServer) -> None:
    from marketpipe_alpaca import AlpacaMarketDataAdapter

    adapter = AlpacaMarketDataAdapter(KEY, SECRET, base_url=server.url)
    try:
        bars = adapter.fetch_bars_for_symbol_sync("aapl", TimeRange.single_day("2024-03-04"), 50)
        awaited = asyncio.run(
            adapter.fetch_bars_for_symbol("aapl", TimeRange.single_day("2024-03-04"))
        )
    finally:
        adapter.close()
    assert 300 < len(awaited) <= 390 and awaited[:50] == bars  # max_bars defaults to 1,000
    assert len(bars) == 50 and bars[0].symbol == Symbol("AAPL")
    assert all(b.low <= b.open <= b.high for b in bars)
    assert KEY not in repr(adapter) and SECRET not in repr(adapter)


def test_many_symbols_in_a_regular_session_query_day_by_day(tmp_path: Path) -> None:
    symbols = ",".join(f"S{i:02d}" for i in range(40))
    args = [
        "ingest",
        "--provider",
        "alpaca",
        "--symbols",
        symbols,
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-08",
        "--data-dir",
        str(tmp_path),
        "--json",
    ]
    with FakeAlpacaServer(KEY, SECRET) as server:
        out = mp(*args, server=server)
        requests = server.stats["requests"]
    assert out.returncode == 0, out.stderr
    # 40 symbols x 390 minutes = 2 pages a day, 10 in all; one span over the week would page
    # through nights and extended hours too (40 x 5 x 960 bars, up to 20 pages).
    assert requests <= 10
    count = duckdb.sql(
        f"SELECT count(*), count(DISTINCT symbol) FROM read_parquet('{tmp_path}/**/*.parquet')"
    ).fetchall()[0]
    assert count[1] == 40 and json.loads(out.stdout)["bars"] == count[0] > 40 * 5 * 350


def test_all_symbols_come_from_the_trading_api_assets_and_mp_symbols_lists_them(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    """``--all-symbols`` for a provider that can list its instruments: Alpaca's assets (the
    trading API's host, its own setting), active ones; the inactive one has no last day, so
    it is not guessed into the job."""
    trading = {"MARKETPIPE_ALPACA_TRADING_URL": server.url}
    out = mp("ingest", "--provider", "alpaca", "--all-symbols", "--timeframe", "1d", "--start",
             "2024-03-04", "--end", "2024-03-08", "--data-dir", str(tmp_path), "--json",
             server=server, extra_env=trading)  # fmt: skip
    assert out.returncode == 0, out.stderr
    stored = sorted({row[0] for row in bars(tmp_path)})
    assert stored == ["AAPL", "MSFT", "NVDA"]
    assert KEY not in out.stdout + out.stderr and SECRET not in out.stdout + out.stderr

    listed = mp("symbols", "--provider", "alpaca", "--fetch", "--all", "--data-dir",
                str(tmp_path), "--json", server=server, extra_env=trading)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    rows = {r["symbol"]: r for r in json.loads(listed.stdout)["symbols"]}
    assert sorted(rows) == ["AAPL", "GONE", "MSFT", "NVDA"]
    assert rows["GONE"]["active"] is False and rows["AAPL"]["primary_exchange"] == "NASDAQ"
    stored_files = " ".join(p.read_bytes().hex() for p in tmp_path.rglob("*.arrow"))
    assert KEY.encode().hex() not in stored_files
