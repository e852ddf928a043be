"""Datasets in object storage: the Parquet sink on a real S3-compatible server (moto's, on
127.0.0.1), driven through the CLI as a user runs it, read back by pyarrow's S3 file system and
polars, and compared row for row with the same ingest on local disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from cli_helpers import mp, mp_json
from marketpipe.testing.s3 import SECRET, S3Server, s3_server

SERIES = "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m"
INGEST = ("ingest", "--provider", "fake", "--symbols", "AAPL,MSFT,SPY")


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def env_of(s3: S3Server, state: Path, **more: str) -> dict[str, str]:
    return {**s3.env(), "MARKETPIPE_STATE_DIR": str(state), "MARKETPIPE_FSYNC": "0", **more}


def s3_rows(s3: S3Server, bucket_prefix: str) -> pa.Table:
    dataset = ds.dataset(f"{bucket_prefix}/{SERIES}", filesystem=s3_fs(s3), format="parquet")
    return sort(dataset.to_table())


def local_rows(root: Path) -> pa.Table:
    return sort(ds.dataset(root / SERIES, format="parquet").to_table())


def s3_fs(s3: S3Server) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        access_key=s3.env()["AWS_ACCESS_KEY_ID"],
        secret_key=SECRET,
        endpoint_override=s3.endpoint,
        scheme="http",
        region="us-east-1",
    )


def sort(table: pa.Table) -> pa.Table:
    table = table.select(["symbol", "timestamp", "open", "high", "low", "close", "volume"])
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")]).combine_chunks()


def test_ingest_update_status_delete_on_s3_equal_local(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket("bars")
    url = f"s3://{bucket}/team/minute"
    env = env_of(s3, tmp_path / "state-a")
    days = ("--start", "2024-01-29", "--end", "2024-02-02")
    out = mp_json(*INGEST, *days, "--data-dir", url, env=env)
    assert out["state"] == "COMPLETED", out  # type: ignore[index]
    local = tmp_path / "local"
    mp(*INGEST, *days, "--data-dir", str(local), env={"MARKETPIPE_FSYNC": "0"}, check=True)
    remote = s3_rows(s3, f"{bucket}/team/minute")
    assert remote.num_rows == 3 * 5 * 390
    assert remote.equals(local_rows(local))
    # polars reads the same rows straight from the bucket.
    polars_rows = pl.scan_parquet(
        f"{url}/{SERIES}/**/*.parquet",
        storage_options={
            "aws_access_key_id": s3.env()["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": SECRET,
            "aws_endpoint_url": s3.endpoint,
            "aws_region": "us-east-1",
            "aws_allow_http": "true",
        },
    ).collect()
    assert polars_rows.height == remote.num_rows

    # Re-ingesting replaces exactly: the same rows, none twice.
    again = mp_json(*INGEST, *days, "--refresh", "--data-dir", url, env=env)
    assert again["partitions_completed"] == 15  # type: ignore[index]
    assert s3_rows(s3, f"{bucket}/team/minute").equals(remote)

    # A second machine (its own state folder) brings the dataset up to date: its catalog is
    # built from the bucket, so it fetches only the new sessions.
    other = env_of(s3, tmp_path / "state-b", MARKETPIPE_NOW="2024-02-07T12:00:00Z")
    update = mp_json("update", "--data-dir", url, env=other)
    summary = update["series"][0]["job"]  # type: ignore[index]
    assert (summary["partitions_stored"], summary["partitions_completed"]) == (15, 6)
    mp(
        *INGEST,
        "--start",
        "2024-02-05",
        "--end",
        "2024-02-06",
        "--data-dir",
        str(local),
        env={"MARKETPIPE_FSYNC": "0"},
        check=True,
    )
    assert s3_rows(s3, f"{bucket}/team/minute").equals(local_rows(local))

    status = mp_json("status", "--data-dir", url, env=env)
    bars = {s["symbol"]: s["bars"] for s in status["series"][0]["symbols"]}  # type: ignore[index]
    assert bars == {"AAPL": 7 * 390, "MSFT": 7 * 390, "SPY": 7 * 390}

    mp(
        "delete",
        "--provider",
        "fake",
        "--symbols",
        "MSFT",
        "--start",
        "2024-02-01",
        "--yes",
        "--data-dir",
        url,
        env=env,
        check=True,
    )
    left = s3_rows(s3, f"{bucket}/team/minute")
    assert left.num_rows == 7 * 390 * 3 - 4 * 390

    # No secret reaches the state folders, the event logs or the output.
    for state in (tmp_path / "state-a", tmp_path / "state-b"):
        for path in state.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in json.dumps(update)


def test_compact_resample_and_verify_work_on_s3(s3: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket('bars')}/x"
    env = env_of(s3, tmp_path / "state")
    for day in ("2024-01-29", "2024-01-30", "2024-01-31"):  # three units: three files a month
        mp(*INGEST, "--start", day, "--end", day, "--data-dir", url, env=env, check=True)
    before = s3_rows(s3, f"{s3.bucket('bars')}/x")
    compacted = mp_json("compact", "--data-dir", url, env=env)
    (folder,) = compacted["folders"]  # type: ignore[index]
    assert (folder["files_before"], folder["files_after"]) == (3, 1)
    assert s3_rows(s3, "bars/x").equals(before)
    resampled = mp_json("resample", "--to", "1h", "--data-dir", url, env=env)
    (series,) = resampled  # type: ignore[misc]
    assert (series["partitions"], series["bars_in"], series["bars_out"]) == (9, 9 * 390, 9 * 7)
    status = mp_json("status", "--data-dir", url, env=env)
    hourly = [s for s in status["series"] if s["timeframe"] == "1h"]  # type: ignore[index]
    assert hourly[0]["bars"] == 9 * 7  # read back from the bucket: 7 hourly bars a session
    verified = mp_json("verify", "--data-dir", url, env=env)
    assert verified["ok"] is True and verified["files"] == 2, verified  # type: ignore[index]
    # A file damaged in the bucket is found by a reader of the bucket, like one on disk.
    fs = s3_fs(s3)
    files = fs.get_file_info(pafs.FileSelector("bars/x/bars/provider=fake", recursive=True))
    damaged = next(
        f.path for f in files if "timeframe=1m" in f.path and f.path.endswith(".parquet")
    )
    with fs.open_output_stream(damaged) as out_file:
        out_file.write(b"not parquet")
    out = mp("verify", "--data-dir", url, "--json", env=env)
    assert out.returncode == 1, out
    kinds = {p["kind"] for p in json.loads(out.stdout)["problems"]}
    assert "unreadable" in kinds, out.stdout


@pytest.mark.parametrize("sink", ["parquet", "delta"])
def test_each_sink_on_s3_passes_the_sink_kit(s3: S3Server, tmp_path: Path, sink: str) -> None:
    url = f"s3://{s3.bucket('kit')}/dataset"
    code = f"from marketpipe.testing import check_sink\nprint(check_sink({sink!r}, {url!r}))\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        # A writer killed holding a month's lease holds up no one: its holder is gone. (Each of
        # the 5 crashes cost the next commit the lease's 60 s before.)
        env={**os.environ, **env_of(s3, tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # One staged; the parquet sink's trades and quotes two commits each (delta keeps bars only).
    commits = 10 if sink == "parquet" else 6
    assert f"SinkReport(sink='{sink}', commits={commits}, crashes=5)" in out.stdout


def test_only_the_first_of_two_writers_records_the_dataset_s_sink(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpipe.storage.object_store import ObjectStore

    url = f"s3://{s3.bucket('first')}/d"
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    store = ObjectStore(url)
    assert store.create("_marketpipe/dataset.json", b'{"sink": "delta"}') is True
    assert store.create("_marketpipe/dataset.json", b'{"sink": "parquet"}') is False
    out = mp(*INGEST, "--start", "2024-01-29", "--end", "2024-01-29", "--data-dir", url,
             env=env_of(s3, tmp_path / "state"))  # fmt: skip
    assert out.returncode == 0, out.stderr  # the recorded sink (delta) is used unasked
    assert b'"delta"' in (store.get("_marketpipe/dataset.json") or b"")


def test_a_writer_whose_lease_was_taken_over_changes_nothing_more(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that stalled past its lease finds, at its next renewal, that another writer
    holds it: its next write or delete in that folder is refused, and the other's lease stays."""
    import obstore
    from marketpipe.model.errors import StoreFailedError
    from marketpipe.storage.object_store import ObjectStore

    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MARKETPIPE_LEASE_SECONDS", "1")  # renewed every third of a second
    url = f"s3://{s3.bucket('leases')}/d"
    mine, theirs = ObjectStore(url), ObjectStore(url)
    folder = "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/month=2024-01"
    with mine.lock(folder):
        mine.write(f"{folder}/part-a.parquet", lambda fh: fh.write(b"a"))
        (lease,) = [k for k in obstore.list(theirs._store, "_marketpipe/locks").collect()]
        obstore.put(theirs._store, lease["path"], b'{"owner": "theirs", "expires": 9e9}')
        deadline = time.monotonic() + 10
        while not mine._held[folder].lost:  # the next renewal finds the ETag changed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(StoreFailedError, match="taken over by another writer"):
            mine.write(f"{folder}/part-b.parquet", lambda fh: fh.write(b"b"))
        with pytest.raises(StoreFailedError, match="taken over by another writer"):
            mine.remove([f"{folder}/part-a.parquet"])
    assert set(mine.listing(folder)) == {"part-a.parquet"}
    assert b"theirs" in (theirs.get(lease["path"]) or b"")  # released only while ours


def test_a_lease_left_by_a_killed_writer_of_this_machine_is_taken_at_once(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed holding a month's lease (an hour long here) does not hold up the next
    writer on the same machine: its holder is gone (tests/test_lease_holder.py: a holder on
    another machine is waited for)."""
    import obstore
    from marketpipe.storage.object_store import ObjectStore

    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MARKETPIPE_LEASE_SECONDS", "3600")
    url = f"s3://{s3.bucket('killed')}/d"
    folder = "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/month=2024-01"
    killed = (
        "import os, signal\n"
        "from marketpipe.storage.object_store import ObjectStore\n"
        f"with ObjectStore({url!r}).lock({folder!r}):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", killed], env=os.environ, timeout=60)
    assert out.returncode == -signal.SIGKILL
    store = ObjectStore(url)
    (lease,) = obstore.list(store._store, "_marketpipe/locks").collect()
    left = json.loads(store.get(lease["path"]) or b"{}")
    assert left["expires"] > time.time() + 3000 and left["holder"]["pid"] > 0
    got: list[str] = []

    def take() -> None:
        with store.lock(folder):
            got.append(store._held[folder].e_tag)

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    taker.join(timeout=60)  # an hour if the lease were waited for
    assert got and got[0] != lease["e_tag"], "waited for the lease of a writer that is gone"


def test_a_lease_time_out_of_range_is_one_line(s3: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket('bars')}/x"
    for bad in ("0.5", "nan", "a minute"):
        env = env_of(s3, tmp_path / "state", MARKETPIPE_LEASE_SECONDS=bad)
        out = mp(*INGEST, "--start", "2024-01-29", "--end", "2024-01-29", "--data-dir", url,
                 env=env)  # fmt: skip
        assert out.returncode == 2, out
        assert out.stderr.strip().splitlines() == [
            f"Error: MARKETPIPE_LEASE_SECONDS must be 1 to 3600 seconds, got {bad!r}"
        ]


def test_rejected_rows_go_to_the_bucket_beside_the_bars(s3: S3Server, tmp_path: Path) -> None:
    """Quarantine is part of the dataset: in the bucket, where every machine (and every Dask
    worker) that fetched rows puts its rejects, not in one machine's state folder."""
    bucket = s3.bucket("rejects")
    url = f"s3://{bucket}/team/minute"
    env = env_of(s3, tmp_path / "state")
    out = mp_json(*INGEST, "--start", "2024-01-29", "--end", "2024-01-30", "-o",
                  "bad_row_rate=0.01", "--data-dir", url, env=env)  # fmt: skip
    assert out["rejected_rows"] > 0  # type: ignore[index]
    shown = mp_json("jobs", "show", out["job_id"], "--partitions", "--data-dir", url, env=env)  # type: ignore[index]
    assert shown["quarantine_dir"] == f"{url}/_marketpipe/quarantine/job={out['job_id']}"  # type: ignore[index]
    fs = s3_fs(s3)
    quarantined = [p for p in shown["partitions_detail"] if p["quarantine"]]  # type: ignore[index]
    assert sum(p["rejected"] for p in quarantined) == out["rejected_rows"]  # type: ignore[index]
    read = 0
    for partition in quarantined:
        with fs.open_input_stream(f"{bucket}/team/minute/{partition['quarantine']}") as fh:
            text = fh.read().decode()
        assert text.splitlines()[0].startswith('"symbol"') and "reason" in text.splitlines()[0]
        read += len(text.splitlines()) - 1
    assert read == out["rejected_rows"]  # type: ignore[index]
    assert not list((tmp_path / "state").rglob("*.csv"))  # nothing left on this machine


def test_a_missing_bucket_is_named_in_one_plain_line(s3: S3Server, tmp_path: Path) -> None:
    env = env_of(s3, tmp_path / "state")
    url = "s3://no-such-bucket/bars"
    for command in (
        [*INGEST, "--start", "2024-03-04", "--end", "2024-03-04", "--data-dir", url],
        ["status", "--data-dir", url],
    ):
        out = mp(*command, env=env)
        assert out.returncode == 2, out
        errors = [line for line in out.stderr.splitlines() if line.strip()]
        assert errors == [
            f"Error: object store {url}: the bucket no-such-bucket does not exist (create it, "
            "or check the URL and AWS_ENDPOINT_URL)"
        ]


def test_verify_after_another_machine_compacted_reports_nothing_false(
    s3: S3Server, tmp_path: Path
) -> None:
    url = f"s3://{s3.bucket('bars')}/shared"
    here, there = env_of(s3, tmp_path / "state-here"), env_of(s3, tmp_path / "state-there")
    for day in ("2024-01-29", "2024-01-30", "2024-01-31"):
        mp(*INGEST, "--start", day, "--end", day, "--data-dir", url, env=here, check=True)
    assert mp_json("verify", "--data-dir", url, env=here)["ok"] is True  # type: ignore[index]
    # Another machine (its own state folder, so its own catalog) compacts the month.
    folders = mp_json("compact", "--data-dir", url, env=there)["folders"]  # type: ignore[index]
    assert (folders[0]["files_before"], folders[0]["files_after"]) == (3, 1)
    verified = mp_json("verify", "--data-dir", url, env=here)
    assert verified["problems"] == [] and verified["ok"] is True, verified  # type: ignore[index]
    assert verified["partitions"] == 9 and verified["bars"] == 9 * 390  # type: ignore[index]
    # A file really lost is still reported, once, with what only it held.
    fs = s3_fs(s3)
    files = fs.get_file_info(pafs.FileSelector("bars/shared/bars/provider=fake", recursive=True))
    (only,) = [f.path for f in files if f.path.endswith(".parquet")]
    fs.delete_file(only)
    out = mp("verify", "--data-dir", url, "--json", env=here)
    assert out.returncode == 1
    problems = json.loads(out.stdout)["problems"]
    assert {p["kind"] for p in problems} == {"missing-file", "job-store"}, problems
    assert "9 partitions (3,510 bars) no other file holds" in str(problems)


def test_a_bucket_with_bars_at_its_root_moves_them_under_bars_once(
    s3: S3Server, tmp_path: Path
) -> None:
    import sqlite3

    bucket = s3.bucket("old")
    url = f"s3://{bucket}/team"
    env = env_of(s3, tmp_path / "state")
    days = ("--start", "2024-01-29", "--end", "2024-01-31")
    mp(*INGEST, *days, "--data-dir", url, env=env, check=True)
    before = s3_rows(s3, f"{bucket}/team")
    # As the release before ticks left it: the bars at the prefix's root, layout 2 recorded.
    fs = s3_fs(s3)
    for info in fs.get_file_info(pafs.FileSelector(f"{bucket}/team/bars", recursive=True)):
        if info.type == pafs.FileType.File:
            fs.move(info.path, info.path.replace("/team/bars/", "/team/", 1))
    (state,) = (tmp_path / "state").glob("datasets/*")
    (state / "_marketpipe" / "layout").write_text("2\n")
    with sqlite3.connect(state / "_marketpipe" / "jobs.sqlite") as db:
        db.execute("UPDATE files SET path = substr(path, 6) WHERE path LIKE 'bars/%'")
    report = mp_json("verify", "--data-dir", url, env=env)
    assert any("upgraded" in n and "1 file moved" in n for n in report["notes"]), report  # type: ignore[index]
    assert s3_rows(s3, f"{bucket}/team").equals(before) and before.num_rows == 3 * 3 * 390
    left = fs.get_file_info(pafs.FileSelector(f"{bucket}/team", recursive=True))
    assert not [
        i.path for i in left if "/team/provider=" in i.path and i.type == pafs.FileType.File
    ]
    assert mp_json("verify", "--data-dir", url, env=env)["notes"] == []  # type: ignore[index]
