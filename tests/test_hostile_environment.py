"""Broken environments and damaged datasets end with one line and lose nothing: the CLI run as a
user runs it, on real files."""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from cli_helpers import mp, mp_json

INGEST = ("ingest", "--provider", "fake", "--symbols", "AAPL,MSFT")
ONE_DAY = ("--start", "2024-03-04", "--end", "2024-03-04")


def ingest(data_dir: Path, start: str = "2024-03-04", end: str = "2024-03-08", *extra: str):
    return mp(*INGEST, "--start", start, "--end", end, "--data-dir", str(data_dir), *extra)


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def rows(data_dir: Path) -> tuple[int, int]:
    return duckdb.sql(
        f"SELECT count(*), count(DISTINCT (symbol, timestamp)) "
        f"FROM read_parquet('{data_dir}/bars/provider=*/**/*.parquet', hive_partitioning=true)"
    ).fetchall()[0]  # type: ignore[return-value]


# -- damaged datasets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"PAR1 not really parquet", b"", b"\x00" * 4096, b"PAR1" + b"\xff" * 200 + b"PAR1"],
    ids=["garbage", "empty", "zeros", "bad-footer"],
)
def test_a_corrupt_parquet_file_in_a_month_folder_fails_the_job_naming_it(
    data_dir: Path, content: bytes
) -> None:
    assert ingest(data_dir).returncode == 0
    folder = next(data_dir.glob("bars/provider=fake/*/*/*/month=2024-03"))
    intruder = folder / "zz-copied-by-hand.parquet"
    intruder.write_bytes(content)
    out = ingest(data_dir, "2024-03-05", "2024-03-05", "--refresh")
    assert out.returncode == 2, out.stderr  # a person must move it: the refresh is not shown
    assert "Traceback" not in out.stderr + out.stdout
    assert "zz-copied-by-hand.parquet" in out.stderr and "move it out" in out.stderr
    jobs = mp_json("jobs", "list", "--data-dir", str(data_dir))
    assert jobs[0]["state"] == "FAILED"  # type: ignore[index]
    intruder.unlink()
    assert rows(data_dir) == (2 * 5 * 390, 2 * 5 * 390)  # nothing was lost meanwhile


def test_a_readable_parquet_file_marketpipe_did_not_write_is_left_alone(data_dir: Path) -> None:
    assert ingest(data_dir).returncode == 0
    folder = next(data_dir.glob("bars/provider=fake/*/*/*/month=2024-03"))
    foreign = folder / "notes.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), foreign)
    assert ingest(data_dir, "2024-03-05", "2024-03-05", "--refresh").returncode == 0
    assert pq.read_table(foreign).num_rows == 3
    # verify says so once, as a note, and is whole; it does not count the file.
    out = mp("verify", "--data-dir", str(data_dir), "--json")
    assert out.returncode == 0, out.stdout
    report = json.loads(out.stdout)
    assert report["problems"] == [] and report["bars"] == 2 * 5 * 390
    (note,) = [n for n in report["notes"] if "notes.parquet" in n]
    assert "a Parquet file MarketPipe did not write" in note and "Arrow" not in note


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys, datetime as dt
    from pathlib import Path
    import pyarrow as pa
    from marketpipe.storage.parquet_sink import ParquetSink
    from marketpipe.plugins.sink import CommitRequest
    from marketpipe.model.values import Timeframe
    table = pa.ipc.open_file(sys.argv[2]).read_all()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
    day = dt.date(2024, 3, 5)
    ParquetSink(Path(sys.argv[1])).commit(CommitRequest(
        table=table, coverage={"AAPL": (day,)}, provider="fake", feed="sim",
        timeframe=Timeframe.M1, job_id="fulldisk0001"))
    """
)


def test_a_full_disk_during_the_clean_up_leaves_the_old_rows_never_both(
    data_dir: Path, tmp_path: Path
) -> None:
    assert ingest(data_dir, "2024-03-01", "2024-03-29").returncode == 0  # one big file a month
    before = rows(data_dir)
    folder = next(data_dir.glob("bars/provider=fake/*/*/*/month=2024-03"))
    (old,) = list(folder.glob("*.parquet"))
    month = pq.read_table(old)
    ts = month["timestamp"]
    in_day = pc.and_(
        pc.equal(month["symbol"], "AAPL"),
        pc.and_(
            pc.greater_equal(ts, pa.scalar(dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC))),
            pc.less(ts, pa.scalar(dt.datetime(2024, 3, 5, 21, 0, tzinfo=dt.UTC))),
        ),
    )
    day_rows = month.filter(in_day).replace_schema_metadata(None)
    assert day_rows.num_rows == 390
    arrow_file = tmp_path / "day.arrow"
    with pa.ipc.new_file(arrow_file, day_rows.schema) as writer:
        writer.write_table(day_rows)
    # The new one-day file fits under the limit; rewriting the month's big file does not.
    limit = max(64 * 1024, old.stat().st_size // 3)
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(data_dir), str(arrow_file), str(limit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "File too large" in done.stderr, done.stderr
    assert rows(data_dir) == before  # the old rows, once; the new file was taken back
    assert sorted(p.name for p in folder.glob("*.parquet")) == [old.name]
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# -- job states ---------------------------------------------------------------------------------


def test_a_job_whose_process_is_gone_shows_as_interrupted(data_dir: Path) -> None:
    assert ingest(data_dir).returncode == 0
    db = sqlite3.connect(data_dir / "_marketpipe" / "jobs.sqlite")
    db.execute("UPDATE jobs SET state = 'IN_PROGRESS'")
    db.commit()
    db.close()
    listed = mp_json("jobs", "list", "--data-dir", str(data_dir))
    assert [j["state"] for j in listed] == ["INTERRUPTED"]  # type: ignore[index, union-attr]
    job_id = listed[0]["id"]  # type: ignore[index]
    shown = mp("jobs", "show", job_id, "--data-dir", str(data_dir))
    assert "INTERRUPTED" in shown.stdout


# -- unusable data dirs and job stores ----------------------------------------------------------


def _file(tmp: Path) -> Path:
    path = tmp / "data"
    path.write_text("I am a file")
    return path


def _dangling(tmp: Path) -> Path:
    path = tmp / "data"
    path.symlink_to(tmp / "gone" / "away")
    return path


def _store_with(content: bytes):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> Path:
        path = tmp / "data"
        (path / "_marketpipe").mkdir(parents=True)
        (path / "_marketpipe" / "jobs.sqlite").write_bytes(content)
        return path

    return make


def _truncated_store(tmp: Path) -> Path:
    path = tmp / "good"
    assert ingest(path, "2024-03-04", "2024-03-04").returncode == 0
    db = (path / "_marketpipe" / "jobs.sqlite").read_bytes()
    return _store_with(db[: len(db) // 3])(tmp)


def _meta_is_a_file(tmp: Path) -> Path:
    path = tmp / "data"
    path.mkdir()
    (path / "_marketpipe").write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "make",
    [
        _file,
        _dangling,
        _store_with(b"this is not a database, just text" * 100),
        _store_with(b"SQLite format 3\x00" + b"\xff" * 5000),
        _truncated_store,
        _meta_is_a_file,
    ],
    ids=["a-file", "dangling-symlink", "not-sqlite", "corrupt-sqlite", "truncated", "meta-file"],
)
@pytest.mark.parametrize("command", ["ingest", "jobs-list"])
def test_an_unusable_data_dir_is_one_line_and_exit_2(tmp_path: Path, make, command: str) -> None:  # type: ignore[no-untyped-def]
    data_dir = make(tmp_path)
    if command == "ingest":
        out = ingest(data_dir, "2024-03-04", "2024-03-04")
    else:
        out = mp("jobs", "list", "--data-dir", str(data_dir))
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert one_line_error(out).startswith("Error: ")


def _without_root_override() -> None:
    """In the child: give up root's power to write through permission bits (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH leave the bounding set, so the exec'd ``mp`` lacks them), so a
    read-only folder is read-only for it, as for any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_a_read_only_data_dir_is_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "ro"
    data_dir.mkdir()
    data_dir.chmod(0o555)
    exe = Path(sys.executable).with_name("mp")
    out = subprocess.run(
        [str(exe), *INGEST, *ONE_DAY, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_without_root_override if os.geteuid() == 0 else None,
    )
    data_dir.chmod(0o755)
    assert out.returncode == 2, out.stderr
    assert "Permission denied" in one_line_error(out)
    assert list(data_dir.iterdir()) == []


def test_a_read_only_dataset_can_be_inspected(data_dir: Path) -> None:
    assert ingest(data_dir, "2024-03-04", "2024-03-05").returncode == 0
    exe = Path(sys.executable).with_name("mp")
    subprocess.run(["chmod", "-R", "a-w", str(data_dir)], check=True)
    try:
        outputs = {
            name: subprocess.run(
                [str(exe), *command, "--data-dir", str(data_dir), "--json"],
                capture_output=True,
                text=True,
                timeout=120,
                preexec_fn=_without_root_override if os.geteuid() == 0 else None,
            )
            for name, command in {
                "status": ["status"],
                "jobs": ["jobs", "list"],
                "verify": ["verify"],
            }.items()
        }
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(data_dir)], check=True)
    for name, out in outputs.items():
        assert out.returncode == 0, (name, out.stderr)
    status = json.loads(outputs["status"].stdout)
    assert sum(s["bars"] for s in status["series"]) == 2 * 2 * 390
    assert [j["state"] for j in json.loads(outputs["jobs"].stdout)] == ["COMPLETED"]
    verified = json.loads(outputs["verify"].stdout)
    assert verified["ok"] is True and verified["bars"] == 2 * 2 * 390
    assert any("read-only" in note for note in verified["notes"])


def test_a_full_disk_for_the_job_store_is_one_line(data_dir: Path) -> None:
    # Every file write past 0 bytes fails (EFBIG), as on a full disk.
    def no_room() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    exe = Path(sys.executable).with_name("mp")
    out = subprocess.run(
        [str(exe), *INGEST, *ONE_DAY, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=no_room,
    )
    assert out.returncode == 2, out.stderr
    assert one_line_error(out).startswith("Error: ")
    assert not list(data_dir.glob("bars/provider=*"))


# -- numbers and text from users ----------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ("--concurrency", "0"),
        ("--concurrency", "-3"),
        ("--batch-size", "0"),
        ("--batch-size", "1.5"),
        ("--metrics-port", "70000"),
        ("--metrics-port", "-1"),
        ("-o", "seed=1.5"),
        ("-o", "seed=nan"),
        ("-o", "bad_row_rate=inf"),
        ("-o", "bad_row_rate=nan"),
    ],
)
def test_numbers_are_checked_at_the_edge(data_dir: Path, extra: tuple[str, str]) -> None:
    out = ingest(data_dir, "2024-03-04", "2024-03-04", *extra)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "Error" in out.stderr
    assert not (data_dir / "bars/provider=fake").exists()


@pytest.mark.parametrize("name", ["dd[/]x", "[bold red]loud", "a[link=x]b"])
def test_a_data_dir_is_printed_literally(tmp_path: Path, name: str) -> None:
    out = mp(
        *INGEST, "--start", "2024-03-04", "--end", "2024-03-04", "--data-dir", name, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert f"data dir │ {name}" in " ".join(out.stdout.split()) or name in out.stdout
    assert (tmp_path / name).is_dir()


def test_quarantine_cells_cannot_run_as_spreadsheet_formulas(tmp_path: Path) -> None:
    from marketpipe.storage.quarantine import defuse_formulas

    table = pa.table(
        {
            "symbol": ['=HYPERLINK("x")', "+1", "-2", "@SUM(A1)", "\tx", "AAPL", None],
            "reason": ["ok"] * 7,
            "n": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    out = defuse_formulas(table)
    assert out["symbol"].to_pylist() == [
        '\'=HYPERLINK("x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "AAPL",
        None,
    ]
    assert out["n"].to_pylist() == table["n"].to_pylist()
    assert json.dumps(out["reason"].to_pylist()) == json.dumps(["ok"] * 7)


def test_a_disk_that_fills_mid_job_names_it_and_the_same_command_resumes(tmp_path: Path) -> None:
    """A real full disk (a 3 MB tmpfs): no traceback, a line naming the data dir, exit 2;
    once there is room, the same command resumes the job and verify agrees."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        data = small / "data"
        job = [str(Path(sys.executable).with_name("mp")), "ingest", "--provider", "fake",
               "--symbols", "K1,K2,K3,K4,K5,K6,K7,K8", "--start", "2023-01-03",
               "--end", "2024-03-28", "--data-dir", str(data)]  # fmt: skip
        env = {**os.environ, "MARKETPIPE_FSYNC": "0"}
        full = subprocess.run(job, capture_output=True, text=True, timeout=300, env=env)
        assert full.returncode == 2, full.stderr
        assert "Traceback" not in full.stderr
        lines = [
            line
            for line in full.stderr.splitlines()
            if line.strip() and not line.startswith("ingest ")  # the progress line
        ]
        assert len(lines) <= 2, full.stderr  # the event log's one warning, then the error
        assert lines[-1].startswith(f"Error: the disk of {data} is full"), lines
        subprocess.run(["mount", "-o", "remount,size=200m", str(small)], check=True)
        again = subprocess.run([*job, "--json"], capture_output=True, text=True, timeout=300,
                               env=env)  # fmt: skip
        assert again.returncode == 0, again.stderr
        summary = json.loads(again.stdout)
        assert (summary["state"], summary["resumed"]) == ("COMPLETED", True)
        verify = subprocess.run([job[0], "verify", "--data-dir", str(data)], capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        assert verify.returncode == 0, verify.stdout
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
