"""The whole market from the flat files, through ``mp`` and the local server."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Session
from marketpipe_massive.flatfiles import day_key
from marketpipe_massive.testing import (
    SECRET_ACCESS_KEY,
    MassiveServer,
    csv_gz,
    day_bars,
    minute_bars,
)
from massive_helpers import DAYS, ingest, mp

MINUTE = "minute_aggs_v1"


def stored(data: Path, timeframe: str = "1m") -> pa.Table:
    """Every stored bar of the series, as the files hold them (no read-time renames)."""
    files = [str(p) for p in data.rglob("*.parquet") if f"timeframe={timeframe}" in str(p)]
    table = ds.dataset(files, format="parquet").to_table(
        columns=["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count"]
    )
    loose = pa.schema([f.with_nullable(True) for f in table.schema])
    return table.cast(loose).sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


def as_files_hold(minutes: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(minutes)
    return pa.table(
        {
            "symbol": table["ticker"],
            "timestamp": pc.cast(table["window_start"], pa.timestamp("ns", tz="UTC")),
            "open": table["open"],
            "high": table["high"],
            "low": table["low"],
            "close": table["close"],
            "volume": table["volume"],
            "trade_count": table["transactions"],
        }
    ).sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


def test_a_whole_market_week_is_stored_row_for_row_reading_each_file_once(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    summary = ingest(
        server,
        tmp_path,
        "--all-symbols",
        "--start", "2024-03-04", "--end", "2024-03-08",
        "--session", "extended",
        "--batch-size", "600",  # a unit holds 2 symbols' day (288 bars each, fill 0.3): many units a file
    )  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    expected = as_files_hold(list(market.values()))
    assert stored(tmp_path).equals(expected)
    assert summary["bars"] == expected.num_rows
    minute_gets = [k for k in server.gets() if MINUTE in k]
    assert sorted(minute_gets) == [day_key(MINUTE, d) for d in DAYS]  # each file once
    assert server.lists().count(f"us_stocks_sip/{MINUTE}/2024/03/") == 1

    # a re-run of stored days asks the server nothing
    before = len(server.requests)
    again = ingest(server, tmp_path, "--all-symbols", "--start", "2024-03-04", "--end", "2024-03-08",
                   "--session", "extended")  # fmt: skip
    assert again["exit"] == 0 and again["bars"] == 0
    assert [r for r in server.requests[before:] if not r.is_list and MINUTE in r.path] == []


def test_symbols_filter_while_reading_and_the_regular_session_is_kept(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    summary = ingest(server, tmp_path, "--symbols", "MSFT,BRK.B", "--start", "2024-03-05",
                     "--end", "2024-03-06")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    windows = nyse_calendar().windows
    from marketpipe.model.values import TimeRange

    regular = windows(TimeRange(DAYS[1], DAYS[2]), Session.REGULAR)
    parts = []
    for window in regular:
        day = market[window.day]
        keep = pc.and_(
            pc.is_in(day["ticker"], pa.array(["MSFT", "BRK.B"])),
            pc.and_(
                pc.greater_equal(day["window_start"], window.start_ns),
                pc.less(day["window_start"], window.end_ns),
            ),
        )
        parts.append(day.filter(keep))
    expected = as_files_hold(parts)
    assert expected.num_rows == 2 * 390 + 2 * 25
    assert stored(tmp_path).equals(expected)


def test_day_bars_are_stamped_at_new_york_midnight(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    summary = ingest(server, tmp_path, "--all-symbols", "--timeframe", "1d",
                     "--start", "2024-03-04", "--end", "2024-03-08")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    expected = as_files_hold([day_bars(market[d], d) for d in DAYS])
    got = stored(tmp_path, "1d")
    assert got.equals(expected)
    first = got.filter(pc.equal(got["symbol"], "AAPL"))["timestamp"][0].as_py()
    assert first.isoformat() == "2024-03-04T05:00:00+00:00"  # 00:00 in New York, EST


def test_a_day_not_published_is_named_and_fetched_by_the_next_run(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    late = day_key(MINUTE, DAYS[2])
    server.withdraw(late)
    summary = ingest(server, tmp_path, "--symbols", "AAPL", "--start", "2024-03-04",
                     "--end", "2024-03-08")  # fmt: skip
    assert summary["exit"] == 1
    failures = summary["failures"]
    assert [f["day"] for f in failures] == ["2024-03-06"]  # type: ignore[index]
    assert "minute file of 2024-03-06 is not published" in failures[0]["error"]  # type: ignore[index]
    assert not any("day=2024-03-06" in str(p) for p in tmp_path.rglob("*"))
    days_stored = set(pc.unique(pc.strftime(stored(tmp_path)["timestamp"], "%F")).to_pylist())
    assert "2024-03-06" not in days_stored and len(days_stored) == 4

    server.publish(late, csv_gz(market[DAYS[2]]))
    again = ingest(server, tmp_path, "--symbols", "AAPL", "--start", "2024-03-04",
                   "--end", "2024-03-08")  # fmt: skip
    assert again["exit"] == 0 and again["bars"] == 390
    assert [k for k in server.gets() if k == late] == [late]


def test_a_forbidden_day_says_what_a_403_can_mean_in_one_line(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    server.forbid(day_key(MINUTE, DAYS[0]))
    summary = ingest(server, tmp_path, "--symbols", "AAPL", "--start", "2024-03-04",
                     "--end", "2024-03-05")  # fmt: skip
    assert summary["exit"] == 1
    (failure,) = summary["failures"]  # type: ignore[misc]
    assert failure["day"] == "2024-03-04"
    assert "outside your plan or its history, not published yet" in failure["error"]
    assert "\n" not in failure["error"]


def test_wrong_s3_keys_end_the_job_in_one_line_without_showing_them(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    out = mp(server, "ingest", "--provider", "massive", "--symbols", "AAPL", "--start",
             "2024-03-04", "--end", "2024-03-04", "--data-dir", str(tmp_path),
             env={"MARKETPIPE_MASSIVE_S3_ACCESS_KEY_ID": "NOT-THE-KEY-1234"})  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "refused the S3 keys" in out.stderr and "Traceback" not in out.stderr
    assert "NOT-THE-KEY-1234" not in out.stdout + out.stderr
    assert SECRET_ACCESS_KEY not in out.stdout + out.stderr


def test_fractional_volume_is_rounded_and_counted_never_truncated(
    server: MassiveServer, tmp_path: Path
) -> None:
    day = DAYS[0]
    minutes = minute_bars(day)
    aapl = pc.equal(minutes["ticker"], "AAPL")
    volume = pc.if_else(aapl, pc.add(pc.cast(minutes["volume"], pa.float64()), 0.6),
                        pc.cast(minutes["volume"], pa.float64()))  # fmt: skip
    drifted = minutes.set_column(1, "volume", volume)
    server.publish(day_key(MINUTE, day), csv_gz(drifted))
    summary = ingest(server, tmp_path, "--symbols", "AAPL,MSFT", "--start", "2024-03-04",
                     "--end", "2024-03-04", "--session", "extended")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    got = stored(tmp_path)
    got_aapl = got.filter(pc.equal(got["symbol"], "AAPL"))["volume"].to_pylist()
    want = minutes.filter(aapl)["volume"].to_pylist()
    assert got_aapl == [v + 1 for v in want]  # x.6 rounds up, never down to x
    assert any("960 row(s) with fractional volume rounded" in n for n in summary["notes"])  # type: ignore[union-attr]


def _publish_text(server: MassiveServer, day: dt.date, text: str) -> None:
    server.publish(day_key(MINUTE, day), gzip.compress(text.encode()))


GOOD_HEADER = "ticker,volume,open,close,high,low,window_start,transactions"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ticker,volume,open,close,high,low,transactions\nAAPL,1,1,1,1,1,1\n",
         "the header lacks window_start"),
        (f"{GOOD_HEADER}\nAAPL,12,abc,1,1,1,1709562600000000000,1\n", "conversion error"),
        ("truncated", "ends inside its gzip stream"),
        ("not gzip", "not a valid gzip file"),
    ],
    ids=["renamed-column", "non-numeric", "truncated-gzip", "not-gzip"],
)  # fmt: skip
def test_a_day_that_cannot_be_read_is_refused_whole_and_nothing_of_it_stored(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path, body: str,
    message: str,
) -> None:  # fmt: skip
    day = DAYS[1]
    key = day_key(MINUTE, day)
    if body == "truncated":
        whole = server.objects[key].body
        server.publish(key, whole[: len(whole) // 2])
    elif body == "not gzip":
        server.publish(key, b"PK\x03\x04 this is a zip")
    else:
        _publish_text(server, day, body)
    summary = ingest(server, tmp_path, "--symbols", "AAPL,MSFT", "--start", "2024-03-04",
                     "--end", "2024-03-05")  # fmt: skip
    assert summary["exit"] == 1
    errors = {f["day"]: f["error"] for f in summary["failures"]}  # type: ignore[union-attr]
    assert set(errors) == {"2024-03-05"} and message in errors["2024-03-05"], errors
    assert all("\n" not in e for e in errors.values())
    assert set(pc.unique(pc.strftime(stored(tmp_path)["timestamp"], "%F")).to_pylist()) == {
        "2024-03-04"
    }


def test_bad_rows_are_quarantined_with_reasons_and_an_extra_column_is_named(
    server: MassiveServer, tmp_path: Path
) -> None:
    day = DAYS[0]
    window = nyse_calendar().window(day, Session.REGULAR)
    t = window.start_ns
    rows = [
        f"AAPL,100,10,10.5,11,9.5,{t},3,x",
        f"AAPL,100,10,10.5,11,9.5,{t},3,x",  # duplicate
        f"AAPL,100,-1,10.5,11,9.5,{t + 60_000_000_000},3,x",  # non-positive price
        f"AAPL,100,10,10.5,11,9.5,{t - 86_400_000_000_000},3,x",  # outside the file's day
        f"AAPL,100,10,10.5,11,9.5,{t + 120_000_000_000},3,x",
    ]
    _publish_text(server, day, f"{GOOD_HEADER},new_column\n" + "\n".join(rows) + "\n")
    summary = ingest(server, tmp_path, "--symbols", "AAPL", "--start", "2024-03-04",
                     "--end", "2024-03-04")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    # the first of two identical rows is kept, the second quarantined
    assert summary["bars"] == 2 and summary["rejected_rows"] == 3
    assert any("new_column not known to MarketPipe" in n for n in summary["notes"])  # type: ignore[union-attr]


def test_a_republished_day_is_fetched_again_whole_by_update(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    # the clock pinned: the evening of the 8th, then the next day's update
    evening = {"MARKETPIPE_NOW": "2024-03-08T23:00:00+00:00"}
    next_day = {"MARKETPIPE_NOW": "2024-03-09T17:00:00+00:00"}
    summary = ingest(server, tmp_path, "--all-symbols", "--start", "2024-03-04",
                     "--end", "2024-03-08", env=evening)  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    # Massive replaces 2024-03-06's file: three tickers' closes corrected
    day = DAYS[2]
    fixed = market[day]
    corrected = pc.is_in(fixed["ticker"], pa.array(["AAPL", "BRK.B", "MSFT"]))
    fixed = fixed.set_column(3, "close", pc.if_else(corrected, pc.add(fixed["close"], 0.01),
                                                     fixed["close"]))  # fmt: skip
    fixed = fixed.set_column(4, "high", pc.max_element_wise(fixed["high"], fixed["close"]))
    server.publish(day_key(MINUTE, day), csv_gz(fixed))
    before = len(server.requests)

    out = mp(server, "update", "--data-dir", str(tmp_path), "--json", env=next_day)
    assert out.returncode == 0, out.stderr
    import json

    (series,) = json.loads(out.stdout)["series"]
    assert series["republished"] == [
        "massive/sip/raw/1m: 2024-03-06: source republished: re-fetched, 3 symbol(s) changed "
        "(AAPL, BRK.B, MSFT)"
    ]
    # only that day's file was read again; the others were only listed (the REST requests
    # are the update's refresh of the corporate actions)
    gets = [r.path for r in server.requests[before:] if r.path.startswith("/flatfiles/")
            and not r.is_list]  # fmt: skip
    assert gets == [f"/flatfiles/{day_key(MINUTE, day)}"]
    got = stored(tmp_path)
    regular = [nyse_calendar().window(d, Session.REGULAR) for d in DAYS]
    expected_parts = []
    for window in regular:
        table = fixed if window.day == day else market[window.day]
        inside = pc.and_(pc.greater_equal(table["window_start"], window.start_ns),
                         pc.less(table["window_start"], window.end_ns))  # fmt: skip
        expected_parts.append(table.filter(inside))
    assert got.equals(as_files_hold(expected_parts))

    # a second update finds nothing republished and reads nothing
    again = len(server.requests)
    out = mp(server, "update", "--data-dir", str(tmp_path), "--json", env=next_day)
    assert out.returncode == 0 and json.loads(out.stdout)["series"][0]["republished"] == []
    assert [r for r in server.requests[again:] if "/flatfiles/" in r.path and not r.is_list] == []


def test_a_whole_market_range_ending_on_a_day_not_yet_published_stores_the_rest(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    last = DAYS[-1]
    server.withdraw(day_key(MINUTE, last))
    server.withdraw(day_key("day_aggs_v1", last))
    summary = ingest(server, tmp_path, "--all-symbols", "--start", "2024-03-04",
                     "--end", "2024-03-08")  # fmt: skip
    assert summary["exit"] == 1, summary["stderr"]
    failed = {f["day"] for f in summary["failures"]}  # type: ignore[union-attr]
    assert failed == {"2024-03-08"}
    assert any("no day file listed for 1 session(s) (2024-03-08)" in n
               for n in summary["notes"])  # type: ignore[union-attr]  # fmt: skip
    stored_days = set(pc.unique(pc.strftime(stored(tmp_path)["timestamp"], "%F")).to_pylist())
    assert stored_days == {"2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"}


def test_files_that_drifted_as_2026_ones_did_load_with_notes(
    server: MassiveServer, tmp_path: Path
) -> None:
    from marketpipe_massive.testing import publish_market

    written = publish_market(server, DAYS[:2], drift_from=DAYS[1])
    summary = ingest(server, tmp_path, "--symbols", "AAPL", "--start", "2024-03-04",
                     "--end", "2024-03-05", "--session", "extended")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    notes = " ".join(summary["notes"])  # type: ignore[arg-type]
    assert "2024-03-05 minute file: column(s) otc not known to MarketPipe" in notes
    assert "2024-03-05 minute file: 96 row(s) with fractional volume rounded" in notes
    assert "2024-03-04 minute file" not in notes
    day = written[DAYS[1]]
    aapl = day.filter(pc.equal(day["ticker"], "AAPL"))["volume"].to_pylist()
    got = stored(tmp_path)
    got = got.filter(pc.greater_equal(got["timestamp"], pa.scalar(1709614800000000000,
                                                                  pa.timestamp("ns", "UTC"))))  # fmt: skip
    # to the nearest share, halves to even (unbiased), as numpy's and Python's round do
    assert got["volume"].to_pylist() == [round(v) for v in aapl]


def test_a_status_is_read_from_the_error_not_from_digits_anywhere_in_it() -> None:
    from marketpipe_massive.flatfiles import _status

    class PermissionDeniedError(Exception):
        pass

    # What obstore said for a 403 that CI once took for a 412: the GET took 412 µs.
    forbidden = PermissionDeniedError(
        "Error performing GET http://127.0.0.1:41203/flatfiles/x.csv.gz in 412.946µs - "
        "Server returned non-2xx status code: 403 Forbidden: <Error>AccessDenied</Error>"
    )
    assert _status(forbidden, 403, "PermissionDenied")
    assert not _status(forbidden, 412, "Precondition")
    reset = OSError("Error performing GET http://127.0.0.1:40312/x in 403.1ms: connection reset")
    assert not _status(reset, 403, "PermissionDenied") and not _status(reset, 412, "Precondition")
    assert _status(OSError("... status code: 412 Precondition Failed ..."), 412, "Precondition")
