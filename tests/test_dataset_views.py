"""Seeing and shaping the dataset: `mp status`, `mp delete`, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import mp, mp_json

FAKE = ["ingest", "--provider", "fake"]


def ingest(
    root: Path, symbols: str, start: str, end: str, *extra: str, env: dict | None = None
) -> dict:
    args = [*FAKE, "--symbols", symbols, "--start", start, "--end", end, "--data-dir", str(root)]
    return mp_json(*args, *extra, env=env)  # type: ignore[return-value]


def test_status_shows_the_exact_gaps_partial_and_thin_days_and_quarantined_rows(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    ingest(root, "AAPL,MSFT", "2024-03-01", "2024-03-28")
    first = ingest(root, "IBM", "2024-03-01", "2024-03-06", "-o", "bad_row_rate=0.01")
    ingest(root, "IBM", "2024-03-12", "2024-03-14")
    ingest(root, "IBM", "2024-03-20", "2024-03-20", env={"MARKETPIPE_NOW": "2024-03-20T15:00:00Z"})
    thin = ingest(root, "XYZ", "2024-03-04", "2024-03-04", "-o", "bad_row_rate=0.7")
    report = mp_json("status", "--data-dir", str(root))
    (series,) = report["series"]  # type: ignore[index]
    assert (series["provider"], series["feed"], series["adjustment"], series["timeframe"]) == (
        "fake",
        "sim",
        "raw",
        "1m",
    )
    by_symbol = {s["symbol"]: s for s in series["symbols"]}
    assert sorted(by_symbol) == ["AAPL", "IBM", "MSFT", "XYZ"]
    ibm = by_symbol["IBM"]
    assert (ibm["first_day"], ibm["last_day"]) == ("2024-03-01", "2024-03-20")
    assert ibm["missing"] == [["2024-03-07", "2024-03-11"], ["2024-03-15", "2024-03-19"]]
    assert ibm["missing_sessions"] == 6 and ibm["sessions"] == 8
    assert ibm["partial"] == ["2024-03-20"]
    assert ibm["quarantined"] == first["rejected_rows"] > 0
    assert by_symbol["XYZ"]["thin"] == ["2024-03-04"] and thin["rejected_rows"] > 195
    assert by_symbol["AAPL"]["missing"] == [] and by_symbol["AAPL"]["sessions"] == 20
    counted = dict(
        duckdb.sql(
            f"SELECT symbol, count(*) FROM read_parquet('{root}/**/*.parquet') GROUP BY 1"
        ).fetchall()
    )
    assert {s: v["bars"] for s, v in by_symbol.items()} == counted
    assert series["bars"] == sum(counted.values())

    only = mp_json("status", "--data-dir", str(root), "--symbols", "IBM")
    assert [s["symbol"] for s in only["series"][0]["symbols"]] == ["IBM"]  # type: ignore[index]


def test_status_reads_well_at_80_columns(tmp_path: Path) -> None:
    root = tmp_path / "data"
    ingest(root, "AAPL,BRK.B", "2024-03-01", "2024-03-05")
    ingest(root, "AAPL", "2024-03-08", "2024-03-08")
    out = subprocess.run(
        [str(Path(sys.executable).with_name("mp")), "status", "--data-dir", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        check=True,
    )
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    assert any(line.startswith("AAPL ") and "2024-03-08" in line for line in lines)
    assert "AAPL: missing 2024-03-06..2024-03-07" in out.stdout


def test_status_of_a_missing_data_dir_is_one_line(tmp_path: Path) -> None:
    out = mp("status", "--data-dir", str(tmp_path / "nothing"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "no dataset at" in out.stderr and not (tmp_path / "nothing").exists()


def rows(root: Path) -> list[tuple]:
    return duckdb.sql(
        "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap FROM "
        f"read_parquet('{root}/bars/provider=*/**/*.parquet') ORDER BY ALL"
    ).fetchall()


def test_delete_removes_exactly_the_selection_update_leaves_it_deleted_and_ingest_restores(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    ingest(root, "AAPL,MSFT", "2024-03-01", "2024-03-15")
    before = rows(root)
    select = ["--provider", "fake", "--symbols", "AAPL", "--start", "2024-03-05"]
    select += ["--end", "2024-03-07", "--data-dir", str(root)]
    dry = mp_json("delete", *select, "--dry-run")
    assert dry["dry_run"] and dry["partitions"] == 3 and dry["bars"] == 3 * 390  # type: ignore[index]
    assert rows(root) == before
    refused = mp("delete", *select)  # stdin is not a terminal: no prompt, no deletion
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert rows(root) == before

    done = mp_json("delete", *select, "--yes")
    assert done["deleted"] and done["bars"] == 3 * 390  # type: ignore[index]
    left = rows(root)
    gone = [r for r in before if r not in set(left)]
    assert len(gone) == 3 * 390 and {r[0] for r in gone} == {"AAPL"}
    new_york = ZoneInfo("America/New_York")
    assert {str(r[1].astimezone(new_york).date()) for r in gone} == {
        "2024-03-05",
        "2024-03-06",
        "2024-03-07",
    }
    status = mp_json("status", "--data-dir", str(root), "--symbols", "AAPL")
    assert status["series"][0]["symbols"][0]["missing"] == [["2024-03-05", "2024-03-07"]]  # type: ignore[index]
    assert mp("verify", "--data-dir", str(root)).returncode == 0  # deleted on purpose: whole

    # Deleted on purpose: update (and its resume, and verify) leave it deleted...
    now = {"MARKETPIPE_NOW": "2024-03-15T21:00:00Z"}
    update = mp_json("update", "--data-dir", str(root), env=now)
    job = update["series"][0]["job"]  # type: ignore[index]
    assert job["partitions_completed"] == 0 and job["partitions"] == 2 * 11 - 3
    assert rows(root) == left
    assert mp("verify", "--data-dir", str(root)).returncode == 0
    assert (
        mp_json("update", "--data-dir", str(root), env=now)["series"][0]["job"][  # type: ignore[index]
            "partitions_completed"
        ]
        == 0
    )
    # ...until the user asks for those days again.
    again = ingest(root, "AAPL", "2024-03-05", "2024-03-07")
    assert again["partitions_completed"] == 3
    assert rows(root) == before


def test_deleted_data_stays_deleted_through_updates_of_several_jobs(tmp_path: Path) -> None:
    """The issue's case: ingest Q1 and Q2 (two jobs), update, delete Q1's first two weeks and
    all of Q2, update again: nothing deleted comes back."""
    root = tmp_path / "data"
    ingest(root, "AAPL,MSFT", "2024-01-02", "2024-03-28")
    ingest(root, "AAPL,MSFT", "2024-04-01", "2024-06-28")
    now = {"MARKETPIPE_NOW": "2024-07-03T21:00:00Z"}
    mp_json("update", "--data-dir", str(root), env=now)
    select = ["--provider", "fake", "--symbols", "AAPL,MSFT", "--yes", "--data-dir", str(root)]
    mp_json("delete", *select, "--start", "2024-01-02", "--end", "2024-01-12")
    mp_json("delete", *select, "--start", "2024-04-01", "--end", "2024-07-03")
    left = rows(root)
    update = mp_json("update", "--data-dir", str(root), env=now)
    assert update["series"][0]["job"]["partitions_completed"] == 0  # type: ignore[index]
    assert rows(root) == left
    days = {str(r[1].astimezone(ZoneInfo("America/New_York")).date()) for r in left}
    assert min(days) == "2024-01-16" and max(days) == "2024-03-28"
    # Later days still come: the next update fetches the sessions after the last one.
    later = mp_json(
        "update", "--data-dir", str(root), env={"MARKETPIPE_NOW": "2024-07-09T21:00:00Z"}
    )
    assert later["series"][0]["job"]["partitions_completed"] == 2 * 3  # Jul 5, 8, 9  # type: ignore[index]


def _save_job(root: Path, job_id: str) -> None:
    from marketpipe.jobs.job import IngestionConfiguration, IngestionJob
    from marketpipe.jobs.store import SqliteJobStore

    store = SqliteJobStore.for_data_dir(root)
    store.save(IngestionJob(job_id, IngestionConfiguration(provider="fake"), ["AAPL"], _range()))
    store.close()


def _range():  # type: ignore[no-untyped-def]
    from marketpipe.model.values import TimeRange

    return TimeRange("2024-03-04", "2024-03-04")


def test_a_job_id_prefix_works_wherever_an_id_does_and_an_ambiguous_one_says_so(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    job = ingest(root, "AAPL", "2024-03-04", "2024-03-05")
    shown = mp_json("jobs", "show", job["job_id"][:5], "--data-dir", str(root))
    assert shown["id"] == job["job_id"]  # type: ignore[index]
    _save_job(root, "abcd00000001")
    _save_job(root, "abcd00000002")
    out = mp("jobs", "show", "abcd", "--data-dir", str(root))
    assert out.returncode == 2 and out.stderr.strip() == (
        "Error: job id prefix abcd is ambiguous: it matches abcd00000001, abcd00000002"
    )
    cancelled = mp_json("jobs", "cancel", "abcd00000002", "--data-dir", str(root))
    assert cancelled["state"] == "CANCELLED"  # type: ignore[index]
    out = mp("jobs", "cancel", "abcd", "--data-dir", str(root))  # still two: refused
    assert out.returncode == 2 and "ambiguous" in out.stderr


def test_every_table_shows_whole_ids_states_and_names_at_80_columns(tmp_path: Path) -> None:
    root = tmp_path / "data"
    job = ingest(root, "AAPL,MSFT,BRK.B,SPY,QQQ", "2024-03-04", "2024-03-05")
    env = {**os.environ, "COLUMNS": "80"}
    exe = str(Path(sys.executable).with_name("mp"))

    def run(*args: str) -> str:
        out = subprocess.run([exe, *args], capture_output=True, text=True, env=env, check=True)
        assert max(len(line.rstrip()) for line in out.stdout.splitlines()) <= 80, out.stdout
        return out.stdout

    listed = run("jobs", "list", "--data-dir", str(root))
    assert job["job_id"] in listed and "COMPLETED" in listed
    assert "…" not in listed
    shown = run("jobs", "show", job["job_id"], "--data-dir", str(root))
    assert f"Job {job['job_id']} COMPLETED" in shown and "BRK.B" in shown
    every = run("jobs", "show", job["job_id"], "--partitions", "--data-dir", str(root))
    assert every.count("COMPLETED") == 1 + 10
    failed_only = run(
        "jobs", "show", job["job_id"], "--partitions", "--state", "failed", "--data-dir", str(root)
    )
    assert failed_only.count("COMPLETED") == 1
    providers = run("providers")
    for name in ("MARKETPIPE_ALPACA_API_KEY_ID", "APCA_API_SECRET_KEY"):
        assert name in providers  # whole, never cut to "MARKETPIPE_…"
    run("status", "--data-dir", str(root))
    run("plugins")


def test_the_event_log_has_one_start_line_per_unit(tmp_path: Path) -> None:
    root = tmp_path / "data"
    job = ingest(root, "AAPL,MSFT,SPY", "2024-03-04", "2024-03-08")
    shown = mp_json("jobs", "show", job["job_id"], "--data-dir", str(root))
    lines = [json.loads(x) for x in Path(shown["event_log"]).read_text().splitlines()]  # type: ignore[index]
    names = [e["event"] for e in lines]
    units = [e for e in lines if e["event"] == "IngestionUnitStarted"]
    assert names.count("IngestionJobStarted") == 1  # the job's; none per partition
    assert sum(u["partitions"] for u in units) == 15 == names.count("IngestionBatchProcessed")


def test_shell_completion_offers_providers_and_timeframes() -> None:
    exe = str(Path(sys.executable).with_name("mp"))

    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            "_MP_COMPLETE": "bash_complete",
        }
        out = subprocess.run([exe], capture_output=True, text=True, env=env, check=True)
        return [line.split(",", 1)[1] for line in out.stdout.splitlines()]

    assert "fake" in complete("mp ingest --provider f")
    assert complete("mp status --timeframe ") == ["1m", "5m", "15m", "30m", "1h", "1d"]
    assert complete("mp ingest --session e") == ["extended"]


def test_the_coverage_picture_shows_a_known_gap_where_it_is(tmp_path: Path) -> None:
    import matplotlib.image

    root = tmp_path / "data"
    ingest(root, "AAPL,MSFT,SPY", "2024-01-02", "2024-01-31")
    ingest(root, "AAPL,SPY", "2024-02-01", "2024-02-29")  # MSFT misses February
    ingest(root, "AAPL,MSFT,SPY", "2024-03-01", "2024-03-28")
    png = tmp_path / "coverage.png"
    assert mp_json("status", "--data-dir", str(root), "--plot", str(png))["plot"] == str(png)  # type: ignore[index]
    image = matplotlib.image.imread(png)
    assert image.shape[1] == 600 and 240 <= image.shape[0] <= 250  # 6 x 2.46 inches at 100 dpi
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    red = (r > 0.5) & (g < 0.2) & (b < 0.3)
    green = (g > 0.3) & (r < 0.2) & (b < 0.3)
    ys, xs = np.nonzero(red | green)  # the cells: symbols x months
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    ry, rx = np.nonzero(red)
    # The gap is exactly the middle cell: the second of three rows, the second of three months.
    third_w, third_h = (right - left + 1) / 3, (bottom - top + 1) / 3
    assert abs(rx.min() - (left + third_w)) <= 2 and abs(rx.max() - (left + 2 * third_w)) <= 2
    assert abs(ry.min() - (top + third_h)) <= 2 and abs(ry.max() - (top + 2 * third_h)) <= 2
    assert red.sum() == pytest.approx(third_w * third_h, rel=0.05)

    html = tmp_path / "coverage.html"
    mp_json("status", "--data-dir", str(root), "--plot", str(html))
    assert html.read_text().startswith("<!doctype html>") and "<svg" in html.read_text()


def test_the_picture_groups_symbols_when_there_are_too_many_rows(tmp_path: Path) -> None:
    root = tmp_path / "data"
    ingest(root, ",".join(f"S{i:03d}" for i in range(130)), "2024-03-04", "2024-03-04")
    svg = tmp_path / "coverage.svg"
    mp_json("status", "--data-dir", str(root), "--plot", str(svg))
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "S000..S002 (3)" in text
    assert "S129" in text and text.count("(2)") + text.count("(3)") == 60
    out = mp("status", "--data-dir", str(root), "--plot", str(tmp_path / "coverage.gif"))
    assert out.returncode == 2 and "use a .png, .svg or .html" in out.stderr


def digest(root: Path) -> tuple:
    return duckdb.sql(
        "SELECT count(*), sum(hash(symbol, timestamp, open, high, low, close, volume, "
        f"trade_count, vwap)) FROM read_parquet('{root}/bars/provider=*/**/*.parquet')"
    ).fetchall()[0]


def test_compact_keeps_the_rows_identical_and_leaves_one_file_a_month(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for day in ("04", "05", "06", "07", "08"):
        ingest(root, "AAPL,MSFT", f"2024-03-{day}", f"2024-03-{day}")
    ingest(root, "SPY", "2024-02-26", "2024-03-08")
    before = digest(root)
    assert len(list(root.glob("bars/provider=*/**/month=2024-03/*.parquet"))) == 6
    dry = mp_json("compact", "--data-dir", str(root), "--dry-run")
    assert [f["files_after"] for f in dry["folders"] if f["changed"]] == [1]  # type: ignore[index]
    assert len(list(root.glob("bars/provider=*/**/month=2024-03/*.parquet"))) == 6
    done = mp_json("compact", "--data-dir", str(root))
    march = [f for f in done["folders"] if f["month"] == "2024-03"]  # type: ignore[index]
    assert march[0]["files_before"] == 6 and march[0]["files_after"] == 1
    assert digest(root) == before
    for month in ("2024-02", "2024-03"):
        assert len(list(root.glob(f"bars/provider=*/**/month={month}/*.parquet"))) == 1
    assert mp("verify", "--data-dir", str(root)).returncode == 0
    again = mp_json("compact", "--data-dir", str(root))
    assert not any(f["changed"] for f in again["folders"])  # type: ignore[index]
    # The dataset still knows what it holds: nothing is fetched again.
    rerun = ingest(root, "AAPL,MSFT", "2024-03-04", "2024-03-08")
    assert rerun["partitions_stored"] == 10 and rerun["partitions_completed"] == 0


def test_compact_drops_a_duplicate_left_by_an_interruption(tmp_path: Path) -> None:
    root = tmp_path / "data"
    ingest(root, "AAPL", "2024-03-04", "2024-03-05")
    before = digest(root)
    (only,) = root.glob("bars/provider=*/**/*.parquet")
    shutil.copy(only, only.with_name("part-leftover-000000000000.parquet"))
    assert digest(root)[0] == 2 * before[0]
    done = mp_json("compact", "--data-dir", str(root))
    assert done["folders"][0]["duplicates_dropped"] == 2  # type: ignore[index]
    assert digest(root) == before
    assert mp("verify", "--data-dir", str(root)).returncode == 0


def test_an_ingest_running_beside_a_compaction_waits_and_corrupts_nothing(tmp_path: Path) -> None:
    root, reference = tmp_path / "data", tmp_path / "reference"
    for day in ("04", "05", "06", "07", "08"):
        ingest(root, "AAPL,MSFT,SPY", f"2024-03-{day}", f"2024-03-{day}")
    ingest(reference, "AAPL,MSFT,SPY", "2024-03-04", "2024-03-12")
    exe = str(Path(sys.executable).with_name("mp"))
    env = {**os.environ, "MARKETPIPE_FSYNC": "0"}
    for _ in range(3):
        jobs = [
            subprocess.Popen(
                [exe, "compact", "--data-dir", str(root), "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
            subprocess.Popen(
                [
                    exe,
                    *FAKE,
                    "--symbols",
                    "AAPL,MSFT,SPY",
                    "--start",
                    "2024-03-04",
                    "--end",
                    "2024-03-12",
                    "--refresh",
                    "--data-dir",
                    str(root),
                    "--json",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        ]
        for proc in jobs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    assert digest(root) == digest(reference)
    assert mp("verify", "--data-dir", str(root)).returncode == 0


DUCKDB_BARS = """
WITH m AS (
    SELECT *, timezone('America/New_York', timestamp) AS local
    FROM read_parquet('{root}/bars/provider=fake/feed=sim/**/*.parquet')
), b AS (
    SELECT *, date_trunc('day', local) + INTERVAL 9 HOUR + INTERVAL 30 MINUTE AS opened FROM m
), w AS (
    SELECT *, opened + to_minutes(
        CAST(floor(date_diff('minute', opened, local) / {minutes}) * {minutes} AS BIGINT)
    ) AS bucket FROM b
)
SELECT symbol, timezone('America/New_York', bucket) AS ts,
       arg_min(open, timestamp), max(high), min(low), arg_max(close, timestamp),
       sum(volume), sum(trade_count), round(sum(vwap * volume) / sum(volume), 9)
FROM w GROUP BY symbol, bucket ORDER BY symbol, ts
"""


def derived(root: Path, timeframe: str) -> list[tuple]:
    return duckdb.sql(
        "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, round(vwap, 9) "
        f"FROM read_parquet('{root}/bars/provider=fake/feed=sim-from-1m/adjustment=raw/"
        f"timeframe={timeframe}/*/*.parquet') ORDER BY symbol, timestamp"
    ).fetchall()


def test_resample_equals_duckdbs_own_aggregation_and_rebuilds_only_what_changed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    ingest(root, "AAPL,MSFT", "2024-03-04", "2024-03-08")
    ingest(root, "AAPL", "2024-11-29", "2024-11-29")  # an early close: 13:00
    for timeframe, minutes in (("5m", 5), ("15m", 15), ("1h", 60)):
        out = mp_json("resample", "--to", timeframe, "--data-dir", str(root))
        assert out[0]["target"] == f"fake/sim-from-1m/raw/{timeframe}"  # type: ignore[index]
        expected = duckdb.sql(DUCKDB_BARS.format(root=root, minutes=minutes)).fetchall()
        assert derived(root, timeframe) == expected
    hourly = derived(root, "1h")
    assert {str(r[1].astimezone(ZoneInfo("America/New_York")).time()) for r in hourly} == {
        f"{h:02d}:30:00" for h in range(9, 16)
    }  # windows from the regular open
    daily = mp_json("resample", "--to", "1d", "--data-dir", str(root))
    assert daily[0]["bars_out"] == 11  # type: ignore[index]
    by_day = duckdb.sql(
        "SELECT symbol, timezone('America/New_York', timestamp)::DATE, sum(volume) FROM "
        f"read_parquet('{root}/bars/provider=fake/feed=sim/**/*.parquet') GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert [(r[0], r[1].date(), r[6]) for r in derived(root, "1d")] == by_day
    meta = pq.ParquetFile(
        next(root.glob("bars/provider=fake/feed=sim-from-1m/**/*.parquet"))
    ).metadata.metadata
    assert meta[b"marketpipe.derived_from"] == b"fake/sim/raw/1m"

    # Nothing changed: nothing rebuilt. One day re-ingested: that day alone.
    assert mp_json("resample", "--to", "1h", "--data-dir", str(root))[0]["partitions"] == 0  # type: ignore[index]
    ingest(root, "MSFT", "2024-03-06", "2024-03-06", "--refresh")
    again = mp_json("resample", "--to", "1h", "--data-dir", str(root))
    assert again[0]["partitions"] == 1 and again[0]["bars_out"] == 7  # type: ignore[index]
    assert derived(root, "1h") == hourly
    # Derived series are kept current by resample, never fetched by update.
    update = mp_json("update", "--data-dir", str(root), env={"MARKETPIPE_NOW": "2024-12-02T01:00Z"})
    assert [(u["feed"], u["timeframe"]) for u in update["series"]] == [("sim", "1m")]  # type: ignore[index]
    assert not list(root.glob("bars/provider=fake/feed=sim/*/timeframe=1h"))


def test_a_damaged_file_stops_compact_delete_and_resample_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    ingest(root, "AAPL", "2024-03-04", "2024-03-05")
    before = digest(root)
    (folder,) = root.glob("bars/provider=fake/*/*/*/month=2024-03")
    (folder / "zz-damaged.parquet").write_bytes(b"PAR1 not really")
    for args in (
        ["compact"],
        ["resample", "--to", "1h"],
        ["delete", "--provider", "fake", "--symbols", "AAPL", "--yes"],
    ):
        out = mp(*args, "--data-dir", str(root))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert "zz-damaged.parquet" in line and "move it out" in line
    status = mp_json("status", "--data-dir", str(root))
    assert any("zz-damaged.parquet" in n and "mp verify" in n for n in status["notes"])  # type: ignore[index]
    (folder / "zz-damaged.parquet").unlink()
    assert digest(root) == before


def test_a_delete_killed_before_the_rows_went_is_finished_by_running_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletion is recorded before the rows go: a delete that dies in between leaves a
    dataset that update does not fill back, and the same delete run again removes the rows."""
    from marketpipe.dataset.operations import Selection, plan_delete, run_delete
    from marketpipe.model.values import Symbol
    from marketpipe.storage.parquet_sink import ParquetSink

    root = tmp_path / "data"
    ingest(root, "AAPL,MSFT", "2024-03-04", "2024-03-08")
    before = rows(root)
    selection = Selection(provider="fake", symbols=(Symbol("MSFT"),))
    plan = plan_delete(root, selection, None, None)

    def killed(self, series, keys):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # the process dies here, after the record

    with monkeypatch.context() as patched:
        patched.setattr(ParquetSink, "delete", killed)
        with pytest.raises(KeyboardInterrupt):
            run_delete(root, plan)
    assert rows(root) == before  # nothing removed yet
    now = {"MARKETPIPE_NOW": "2024-03-08T21:00:00Z"}
    update = mp_json("update", "--data-dir", str(root), env=now)
    assert update["series"][0]["job"]["partitions_completed"] == 0  # type: ignore[index]
    again = mp_json("delete", "--provider", "fake", "--symbols", "MSFT", "--yes",
                    "--data-dir", str(root))  # fmt: skip
    assert again["bars"] == 5 * 390  # type: ignore[index]
    assert {r[0] for r in rows(root)} == {"AAPL"}
    assert mp("verify", "--data-dir", str(root)).returncode == 0
