"""Correct over time, against the local Alpaca server whose day moves forward.

Daily bars of NVDA, AAPL and OLDCO are ingested raw and split-adjusted at the end of June; then a
10-for-1 NVDA split (ex 2024-07-15), an AAPL dividend (ex 2024-08-09) and OLDCO's rename to
NEWCO (2024-07-22) become known. ``mp verify`` and ``mp status`` see that the stored split series
is older than the ledger; ``mp update`` restates it and goes on with OLDCO as NEWCO; afterwards
the stored split series equals the server's, and every ``marketpipe.read`` adjustment equals the
server's own computation (:mod:`marketpipe_alpaca.fake_market`) within 1e-6 relative in price
and one share in volume.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import marketpipe
import pyarrow as pa
import pytest
from cli_helpers import mp
from marketpipe.testing.s3 import s3_server
from marketpipe_alpaca.testing import FakeAlpacaServer

KEY, SECRET = "restate-key", "restate-secret"
MP = str(Path(sys.executable).with_name("mp"))
ACTIONS = [
    # Known from the start: a dividend in February.
    {"type": "cash_dividends", "id": "div-aapl-feb", "symbol": "AAPL", "rate": 0.24,
     "special": False, "foreign": False, "ex_date": "2024-02-09", "process_date": "2024-02-01"},
    # Learnt after the first ingest.
    {"type": "forward_splits", "id": "split-nvda", "symbol": "NVDA", "cusip": "67066G104",
     "old_rate": 1, "new_rate": 10, "ex_date": "2024-07-15", "process_date": "2024-07-05"},
    {"type": "cash_dividends", "id": "div-aapl-aug", "symbol": "AAPL", "rate": 0.25,
     "special": False, "foreign": False, "ex_date": "2024-08-09", "process_date": "2024-08-01"},
    {"type": "name_changes", "id": "rename-oldco", "old_symbol": "OLDCO", "new_symbol": "NEWCO",
     "process_date": "2024-07-22"},
]  # fmt: skip
FIRST_DAY, SECOND_DAY = dt.date(2024, 6, 28), dt.date(2024, 8, 30)
ADJUSTMENTS = ("raw", "split", "dividend", "all")


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(KEY, SECRET, actions=ACTIONS, today=FIRST_DAY) as s:
        yield s


def env_at(server: FakeAlpacaServer, day: dt.date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "MARKETPIPE_"))}
    env.update(
        APCA_API_KEY_ID=KEY,
        APCA_API_SECRET_KEY=SECRET,
        MARKETPIPE_ALPACA_BASE_URL=server.url,
        MARKETPIPE_FSYNC="0",
        MARKETPIPE_NOW=f"{day + dt.timedelta(days=1)}T02:00:00Z",
    )
    return env


def served(
    server: FakeAlpacaServer, symbols: str, adjustment: str, end: dt.date, start: str = "2024-01-01"
) -> dict[tuple[str, dt.date], tuple[float, ...]]:
    """What the server itself answers: ``(symbol, day) -> (o, h, l, c, vw, v)``."""
    answer = httpx.get(
        f"{server.url}/v2/stocks/bars",
        params={
            "symbols": symbols,
            "timeframe": "1Day",
            "start": start,
            "end": f"{end}T23:59:59Z",
            "adjustment": adjustment,
            "feed": "iex",
            "limit": "10000",
        },
        headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
        timeout=30,
    ).json()
    assert answer["next_page_token"] is None
    out = {}
    for symbol, bars in answer["bars"].items():
        for b in bars:
            day = dt.date.fromisoformat(b["t"][:10])
            out[(symbol, day)] = (b["o"], b["h"], b["l"], b["c"], b["vw"], b["v"])
    return out


def as_read(table: pa.Table) -> dict[tuple[str, dt.date], tuple[float, ...]]:
    out = {}
    for row in table.to_pylist():
        # Daily bars are stamped at New York midnight: 04:00 or 05:00 UTC the same day.
        day = row["timestamp"].date()
        out[(row["symbol"], day)] = tuple(
            row[k] for k in ("open", "high", "low", "close", "vwap", "volume")
        )
    return out


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for key, want in theirs.items():
        got = ours[key]
        assert got[:5] == pytest.approx(want[:5], rel=1e-6), key
        assert abs(got[5] - want[5]) <= 1, key


def mp_ok(*args: str, env: dict[str, str]) -> dict:
    out = mp(*args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def ingest_daily(symbol: str, start: object, end: object, root: object, *more: str,
                 env: dict[str, str]) -> dict:  # fmt: skip
    """``mp ingest`` of one symbol's daily Alpaca bars, as a user runs it."""
    return mp_ok("ingest", "--provider", "alpaca", "--symbols", symbol, "--timeframe", "1d",
                 "--start", str(start), "--end", str(end), "--data-dir", str(root), *more,
                 env=env)  # fmt: skip


@pytest.fixture(params=["local", "s3", "delta"])
def place(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """Where the dataset lives: ``(data dir, extra ingest options, extra environment)``; the
    environment is this process's too, for ``marketpipe.read``."""
    if request.param == "local":
        yield str(tmp_path / "data"), [], {}
    elif request.param == "delta":
        yield str(tmp_path / "data"), ["--sink", "delta"], {}
    else:
        with s3_server() as s3:
            env = {**s3.env(), "MARKETPIPE_STATE_DIR": str(tmp_path / "state")}
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            yield f"s3://{s3.bucket('history')}/daily", [], env


def test_split_dividend_and_rename_learnt_later_restate_and_read_like_the_server(
    server: FakeAlpacaServer, place: tuple[str, list[str], dict[str, str]]
) -> None:
    root, options, extra = place
    first = {**env_at(server, FIRST_DAY), **extra}
    job = ("ingest", "--provider", "alpaca", "--symbols", "NVDA,AAPL,OLDCO", "--timeframe",
           "1d", "--start", "2024-01-02", "--end", str(FIRST_DAY), "--data-dir", root)  # fmt: skip
    mp_ok(*job, *options, env=first)
    mp_ok(*job, "-o", "adjustment=split", env=first)
    split_before = as_read(
        marketpipe.read(
            root,
            provider="alpaca",
            symbols=["NVDA"],
            start="2024-01-02",
            end=str(FIRST_DAY),
            timeframe="1d",
            adjustment="split",
        )
    )
    assert mp("verify", "--data-dir", root, env=first).returncode == 0

    # Two months later: the split, a dividend and the rename are known to the server.
    server.today = SECOND_DAY
    later = {**env_at(server, SECOND_DAY), **extra}
    filled = mp_ok("actions", "--fetch", "--provider", "alpaca", "--symbols", "NVDA,AAPL,OLDCO",
                   "--start", "2024-01-01", "--data-dir", root, env=later)  # fmt: skip
    assert filled["fetched"]["new"] == 3
    verify = mp("verify", "--data-dir", root, "--json", env=later)
    assert verify.returncode == 1, verify.stdout
    problems = json.loads(verify.stdout)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [("stale-adjusted", "alpaca/iex/split/1d")]
    assert problems[0]["detail"].startswith(
        "NVDA split series: forward split 10-for-1, ex 2024-07-15, 124 days"
    )
    status = mp_ok("status", "--data-dir", root, env=later)
    split_series = next(s for s in status["series"] if s["adjustment"] == "split")
    marks = {y["symbol"]: y["stale"] for y in split_series["symbols"]}
    assert marks["AAPL"] is None and marks["NEWCO"] is None  # OLDCO, renamed since
    assert marks["NVDA"].startswith("forward split 10-for-1, ex 2024-07-15")

    update = mp("update", "--data-dir", root, env=later)
    assert update.returncode == 0, update.stderr
    text = " ".join(update.stdout.split())
    assert "NVDA split series restated: forward split 10-for-1, ex 2024-07-15, 124 days" in text
    assert "OLDCO was renamed NEWCO on 2024-07-22" in text
    assert "AAPL split series restated" not in text  # a dividend: not what a split series is
    assert mp("verify", "--data-dir", root, env=later).returncode == 0

    # The stored split series is the server's, whole; the days before the split changed.
    stored = as_read(
        marketpipe.read(
            root,
            provider="alpaca",
            symbols=["NVDA", "AAPL", "NEWCO"],
            start="2024-01-02",
            end=str(SECOND_DAY),
            timeframe="1d",
            adjustment="split",
        )
    )
    assert_same(stored, served(server, "NVDA,AAPL,NEWCO", "split", SECOND_DAY))
    jan = ("NVDA", dt.date(2024, 1, 2))
    assert stored[jan][3] == pytest.approx(split_before[jan][3] / 10, rel=1e-9)

    # Every adjustment read from the raw bars and the ledger equals the server's own.
    for adjustment in ADJUSTMENTS:
        ours = marketpipe.read(
            root, provider="alpaca", symbols=["NVDA", "AAPL", "NEWCO"], start="2024-01-02",
            end=str(SECOND_DAY), timeframe="1d", adjustment=adjustment, feed="iex",
        )  # fmt: skip
        assert_same(as_read(ours), served(server, "NVDA,AAPL,NEWCO", adjustment, SECOND_DAY))

    # One line for the renamed company, under its name now.
    status = mp_ok("status", "--data-dir", root, env=later)
    raw = next(s for s in status["series"] if s["adjustment"] == "raw")
    lines = {y["symbol"]: y for y in raw["symbols"]}
    assert sorted(lines) == ["AAPL", "NEWCO", "NVDA"]
    assert lines["NEWCO"]["names"] == ["OLDCO", "NEWCO"]
    assert lines["NEWCO"]["first_day"] == "2024-01-02"
    assert lines["NEWCO"]["last_day"] == str(SECOND_DAY)
    assert lines["NEWCO"]["missing_sessions"] == 0


def test_as_of_before_a_split_reads_the_series_as_it_was_seen_then(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server.today = SECOND_DAY
    later = env_at(server, SECOND_DAY)
    ingest_daily("NVDA", "2024-06-03", SECOND_DAY, root, env=later)
    kw = dict(provider="alpaca", symbols=["NVDA"], start="2024-06-03", end="2024-07-12",
              timeframe="1d", adjustment="split")  # fmt: skip
    then = as_read(marketpipe.read(root, as_of="2024-07-12", **kw))  # type: ignore[arg-type]
    now = as_read(marketpipe.read(root, **kw))  # type: ignore[arg-type]
    raw = as_read(marketpipe.read(root, **{**kw, "adjustment": "raw"}))  # type: ignore[arg-type]
    # Announced on 07-05 but not yet effective on 07-12: nobody adjusted for it then.
    assert then == raw
    assert now[("NVDA", dt.date(2024, 7, 12))][3] == pytest.approx(
        raw[("NVDA", dt.date(2024, 7, 12))][3] / 10, rel=1e-12
    )
    server.today = dt.date(2024, 7, 12)
    assert_same(then, served(server, "NVDA", "split", dt.date(2024, 7, 12), "2024-06-03"))


def test_a_dividend_at_or_above_the_close_before_it_is_set_aside_never_applied(
    tmp_path: Path,
) -> None:
    absurd = {"type": "cash_dividends", "id": "div-absurd", "symbol": "NVDA", "rate": 5000.0,
              "special": True, "foreign": False, "ex_date": "2024-03-12",
              "process_date": "2024-03-01"}  # fmt: skip
    with FakeAlpacaServer(KEY, SECRET, actions=[*ACTIONS, absurd], today=FIRST_DAY) as server:
        root = tmp_path / "data"
        env = env_at(server, FIRST_DAY)
        job = ("ingest", "--provider", "alpaca", "--symbols", "NVDA", "--timeframe", "1d",
               "--start", "2024-03-01", "--end", "2024-03-29", "--data-dir", str(root))  # fmt: skip
        out = mp_ok(*job, env=env)
        assert any("1 records that make no sense were set aside" in n for n in out["notes"])
        mp_ok(*job, "--refresh", env=env)  # asked again: set aside once, not twice
        rejected = mp_ok("actions", "--rejected", "--data-dir", str(root), env=env)["actions"]
        assert [a["id"] for a in rejected] == ["div-absurd"]
        reason = rejected[0]["reason"]
        assert reason.startswith("a dividend of 5000 at or above the close before its ex-date (")
        assert float(reason.split("(")[1].rstrip(")")) < 5000
        kept = mp_ok("actions", "--data-dir", str(root), env=env)["actions"]
        assert "div-absurd" not in [a["id"] for a in kept]
        read = marketpipe.read(root, provider="alpaca", symbols=["NVDA"], start="2024-03-01",
                               end="2024-03-29", timeframe="1d", adjustment="dividend")  # fmt: skip
        raw = marketpipe.read(root, provider="alpaca", symbols=["NVDA"], start="2024-03-01",
                              end="2024-03-29", timeframe="1d")  # fmt: skip
        assert read.equals(raw)  # nothing applied


SPLIT_AFTER_WEEKEND = {"type": "forward_splits", "id": "split-nvda", "symbol": "NVDA",
                       "old_rate": 1, "new_rate": 10, "ex_date": "2024-07-15",
                       "process_date": "2024-07-05"}  # fmt: skip


@pytest.mark.parametrize(
    "fetched_at",
    [
        "2024-07-15T01:00:00Z",  # 21:00 New York the evening before: the ex-date in UTC
        "2024-07-15T12:00:00Z",  # 08:00 New York on the ex-date, before the split trades
    ],
)
def test_a_split_fetched_the_same_day_is_restated(tmp_path: Path, fetched_at: str) -> None:
    """Instants, not calendar days of two zones: bars fetched before the split traded are
    stale, and the next update restates them to what the provider then serves."""
    with FakeAlpacaServer(
        KEY, SECRET, actions=[SPLIT_AFTER_WEEKEND], today=dt.date(2024, 7, 14)
    ) as server:
        root = str(tmp_path / "data")
        env = {**env_at(server, dt.date(2024, 7, 14)), "MARKETPIPE_NOW": fetched_at}
        ingest_daily("NVDA", "2024-07-01", "2024-07-12", root, "-o", "adjustment=split", env=env)
        verify = mp("verify", "--data-dir", root, "--json", env=env)
        assert verify.returncode == 1, verify.stdout
        [problem] = json.loads(verify.stdout)["problems"]
        assert problem["detail"].startswith("NVDA split series: forward split 10-for-1")

        server.today = dt.date(2024, 7, 16)
        later = env_at(server, dt.date(2024, 7, 16))
        update = mp("update", "--data-dir", root, env=later)
        assert update.returncode == 0, update.stderr
        assert "NVDA split series restated" in " ".join(update.stdout.split())
        assert mp("verify", "--data-dir", root, env=later).returncode == 0
        stored = as_read(marketpipe.read(root, provider="alpaca", symbols=["NVDA"],
                                         start="2024-07-01", end="2024-07-16", timeframe="1d",
                                         adjustment="split"))  # fmt: skip
        assert_same(stored, served(server, "NVDA", "split", dt.date(2024, 7, 16), "2024-07-01"))


def test_a_split_after_a_rename_restates_the_old_names_bars(tmp_path: Path) -> None:
    """NEWCO (formerly OLDCO) splits 2-for-1: OLDCO's stored split-adjusted bars are stale,
    verify says so, and update restates them to the server's."""
    actions = [
        {"type": "name_changes", "id": "rename-oldco", "old_symbol": "OLDCO",
         "new_symbol": "NEWCO", "process_date": "2024-07-22"},
        {"type": "forward_splits", "id": "split-newco", "symbol": "NEWCO", "old_rate": 1,
         "new_rate": 2, "ex_date": "2024-08-15", "process_date": "2024-08-08"},
    ]  # fmt: skip
    with FakeAlpacaServer(KEY, SECRET, actions=actions, today=FIRST_DAY) as server:
        root = str(tmp_path / "data")
        ingest_daily("OLDCO", "2024-06-03", FIRST_DAY, root, "-o", "adjustment=split",
                     env=env_at(server, FIRST_DAY))  # fmt: skip
        server.today = SECOND_DAY
        later = env_at(server, SECOND_DAY)
        mp_ok("actions", "--fetch", "--provider", "alpaca", "--symbols", "OLDCO,NEWCO",
              "--start", "2024-06-01", "--data-dir", root, env=later)  # fmt: skip
        verify = mp("verify", "--data-dir", root, "--json", env=later)
        assert verify.returncode == 1, verify.stdout
        assert "OLDCO split series: forward split 2-for-1" in verify.stdout
        update = mp("update", "--data-dir", root, env=later)
        assert update.returncode == 0, update.stderr
        assert "OLDCO split series restated" in " ".join(update.stdout.split())
        assert mp("verify", "--data-dir", root, env=later).returncode == 0
        stored = as_read(marketpipe.read(root, provider="alpaca", symbols=["OLDCO"],
                                         start="2024-06-03", end=str(FIRST_DAY), timeframe="1d",
                                         adjustment="split"))  # fmt: skip
        want = served(server, "OLDCO", "split", FIRST_DAY, "2024-06-03")
        assert want and all(key[0] == "OLDCO" for key in want)
        assert_same(stored, want)


#: OLDCO became NEWCO on August 1; the server's day when the rename tests look.
RENAME_IN_AUGUST = [{"type": "name_changes", "id": "rename-oldco", "old_symbol": "OLDCO",
                     "new_symbol": "NEWCO", "process_date": "2024-08-01"}]  # fmt: skip
RENAMED_BY = dt.date(2024, 9, 30)


def test_an_update_learns_a_rename_before_it_plans(tmp_path: Path) -> None:
    """OLDCO stored to June 28; by September 30 the provider knows OLDCO became NEWCO on
    August 1: one update stores NEWCO from August 1, never OLDCO's empty days after it."""
    end = RENAMED_BY
    with FakeAlpacaServer(KEY, SECRET, actions=RENAME_IN_AUGUST, today=FIRST_DAY) as server:
        root = str(tmp_path / "data")
        ingest_daily("OLDCO", "2024-01-02", FIRST_DAY, root, env=env_at(server, FIRST_DAY))
        server.today = end
        later = env_at(server, end)
        update = mp_ok("update", "--data-dir", root, env=later)
        assert any("OLDCO was renamed NEWCO on 2024-08-01" in n for n in update["notes"])
        read = marketpipe.read(root, provider="alpaca", symbols=["NEWCO"], start="2024-01-02",
                               end=str(end), timeframe="1d")  # fmt: skip
        assert_same(as_read(read), served(server, "NEWCO", "raw", end, "2024-01-02"))
        assert read.num_rows == 188
        status = mp_ok("status", "--data-dir", root, env=later)
        [line] = status["series"][0]["symbols"]
        assert line["symbol"] == "NEWCO" and line["thin"] == [] and line["missing_sessions"] == 0
        assert mp("verify", "--data-dir", root, env=later).returncode == 0


def test_an_old_names_empty_days_after_its_rename_are_no_obstacle(tmp_path: Path) -> None:
    """An ingest of OLDCO through September stores August and September empty (the rename
    was learnt after the bars): the next update fills them under NEWCO, and status counts
    none of the old name's empty days as thin."""
    end = RENAMED_BY
    with FakeAlpacaServer(KEY, SECRET, actions=RENAME_IN_AUGUST, today=end) as server:
        root = str(tmp_path / "data")
        env = env_at(server, end)
        first = ingest_daily("OLDCO", "2024-01-02", end, root, env=env)
        assert any(
            n.startswith("OLDCO was renamed NEWCO on 2024-08-01: its days from then on are NEWCO's")
            for n in first["notes"]
        ), first["notes"]
        mp_ok("update", "--data-dir", root, env=env)
        status = mp_ok("status", "--data-dir", root, env=env)
        [line] = status["series"][0]["symbols"]
        assert line["symbol"] == "NEWCO" and line["names"] == ["OLDCO", "NEWCO"]
        assert line["thin"] == [] and line["missing_sessions"] == 0
        read = marketpipe.read(root, provider="alpaca", symbols=["NEWCO"], start="2024-01-02",
                               end=str(end), timeframe="1d")  # fmt: skip
        assert read.num_rows == 188


def test_a_read_of_a_name_never_depends_on_what_else_is_asked(tmp_path: Path) -> None:
    """NEWCO (formerly OLDCO) stored under its new name only: NEWCO reads the same alone or
    beside OLDCO, OLDCO reads its own days (as the provider serves them), and an unknown
    symbol is an empty table with a warning."""
    end = RENAMED_BY
    with FakeAlpacaServer(KEY, SECRET, actions=RENAME_IN_AUGUST, today=end) as server:
        root = str(tmp_path / "data")
        ingest_daily("NEWCO", "2024-06-03", end, root, env=env_at(server, end))
        kw = dict(provider="alpaca", start="2024-06-03", end=str(end), timeframe="1d")
        alone = as_read(marketpipe.read(root, symbols=["NEWCO"], **kw))  # type: ignore[arg-type]
        both = as_read(marketpipe.read(root, symbols=["NEWCO", "OLDCO"], **kw))  # type: ignore[arg-type]
        assert {k: v for k, v in both.items() if k[0] == "NEWCO"} == alone
        assert_same(alone, served(server, "NEWCO", "raw", end, "2024-06-03"))
        old = {k: v for k, v in both.items() if k[0] == "OLDCO"}
        want = served(server, "OLDCO", "raw", end, "2024-06-03")
        assert len(want) == 41
        assert_same(old, want)
        assert as_read(marketpipe.read(root, symbols=["OLDCO"], **kw)) == old  # type: ignore[arg-type]
        with pytest.warns(UserWarning, match="NOPE: no bars stored for these days"):
            nothing = marketpipe.read(root, symbols=["NOPE"], **kw)  # type: ignore[arg-type]
        assert nothing.num_rows == 0


@pytest.mark.parametrize("sink", ["parquet", "delta"])
def test_a_restatement_is_read_whole_or_not_at_all(tmp_path: Path, sink: str) -> None:
    """While mp update restates a split series unit by unit, marketpipe.read gives the old
    bars of every month (caught with two of its units fetched and the third held by the
    server); once it ends, the new bars of every month. Never a mix."""
    with FakeAlpacaServer(
        KEY, SECRET, actions=[SPLIT_AFTER_WEEKEND], today=dt.date(2024, 7, 12)
    ) as server:
        root = tmp_path / "data"
        ingest_daily("NVDA", "2024-01-02", "2024-07-12", root, "--sink", sink,
                     "-o", "adjustment=split", env=env_at(server, dt.date(2024, 7, 12)))  # fmt: skip

        def processed() -> int:  # partitions recorded done (committed or staged), every job
            logs = (root / "_marketpipe" / "events").glob("*.jsonl")
            return sum(log.read_text().count('"IngestionBatchProcessed"') for log in logs)

        stored = processed()

        def closes() -> dict[str, float]:
            table = marketpipe.read(str(root), provider="alpaca", symbols=["NVDA"],
                                    start="2024-01-02", end="2024-07-12", timeframe="1d",
                                    adjustment="split")  # fmt: skip
            return {str(k[1]): v[3] for k, v in as_read(table).items()}

        before = closes()
        assert len({day[:7] for day in before}) == 7  # January to July
        server.today = dt.date(2024, 7, 16)
        server.hold_bars(after=2)
        update = subprocess.Popen(
            [MP, "update", "--data-dir", str(root), "--batch-size", "20"],
            env=env_at(server, dt.date(2024, 7, 16)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # Two units of 20 days are done (the server holds the third) once more than 20 of
            # the update's partitions are recorded processed.
            deadline = time.monotonic() + 60
            while processed() - stored <= 20:
                assert update.poll() is None and time.monotonic() < deadline, update.stderr
                time.sleep(0.05)
            assert closes() == before  # the old bars of every month, none restated yet
        finally:
            server.release()
        out, err = update.communicate(timeout=120)
        assert update.returncode == 0, err
        assert "NVDA split series restated" in " ".join(out.split())
        after = closes()
        want = served(server, "NVDA", "split", dt.date(2024, 7, 12), "2024-01-02")
        assert after == pytest.approx({str(d): v[3] for (_, d), v in want.items()}, rel=1e-6)
        assert all(after[d] == pytest.approx(before[d] / 10) for d in before)
        assert mp("verify", "--data-dir", str(root), env=env_at(server, dt.date(2024, 7, 16))
                  ).returncode == 0  # fmt: skip
