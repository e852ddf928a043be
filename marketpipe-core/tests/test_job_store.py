import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest
from marketpipe.ingestion import (
    IngestionConfiguration,
    IngestionJob,
    IngestionJobId,
    ProcessingState,
    Symbol,
    TimeRange,
)
from marketpipe.jobs.store import PartitionOutcome, SqliteJobStore
from marketpipe.model.errors import JobNotFoundError

DAY = dt.date(2024, 1, 2)


def test_jobs_and_partitions_round_trip_through_a_real_sqlite_file(tmp_path: Path) -> None:
    store = SqliteJobStore.for_data_dir(tmp_path)
    job = IngestionJob(
        job_id=IngestionJobId.generate(),
        symbols=(Symbol("AAPL"), Symbol("BF-B")),
        time_range=TimeRange(DAY, DAY),
        configuration=IngestionConfiguration(provider="fake", settings={"seed": "3"}),
    )
    store.save(job)
    job.start()
    store.save(job)
    both = np.ones((2, 1), dtype=bool)
    store.plan(job.job_id, ["AAPL", "BF-B"], np.array([DAY.toordinal()]), both, ~both)
    store.mark_completed(job.job_id, [PartitionOutcome("AAPL", DAY, 390, 2, "a.parquet")])
    store.mark_failed(job.job_id, [("BF-B", DAY)], "ConnectionError: refused")
    store.close()

    reopened = SqliteJobStore(tmp_path / "_marketpipe" / "jobs.sqlite")
    loaded = reopened.get(job.job_id)
    assert loaded.state is ProcessingState.IN_PROGRESS
    assert loaded.symbols == job.symbols and loaded.configuration == job.configuration
    assert loaded.bars_processed == 390
    assert reopened.completed_keys(job.job_id) == {("AAPL", DAY)}
    states = {(p.symbol, p.state, p.error) for p in reopened.partitions(job.job_id)}
    assert states == {("AAPL", "COMPLETED", None), ("BF-B", "FAILED", "ConnectionError: refused")}
    assert reopened.totals(job.job_id) == {
        "partitions": 2,
        "bars": 390,
        "rejected": 2,
        "completed": 1,
        "failed": 1,
    }
    assert [j.job_id for j in reopened.list_jobs()] == [job.job_id]


def test_a_plan_is_one_row_a_symbol_and_its_partitions_without_a_row_are_pending(
    tmp_path: Path,
) -> None:
    store = SqliteJobStore.for_data_dir(tmp_path)
    job = IngestionJob(
        job_id=IngestionJobId.generate(),
        symbols=(Symbol("A"), Symbol("B")),
        time_range=TimeRange(DAY, DAY + dt.timedelta(days=2)),
        configuration=IngestionConfiguration(provider="fake"),
    )
    store.save(job)
    days = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    ordinals = np.array([d.toordinal() for d in days])
    asked = np.array([[True, True, True], [False, True, True]])
    stored = np.array([[True, False, False], [False, False, False]])
    store.plan(job.job_id, ["A", "B"], ordinals, asked, stored)
    store.mark_completed(job.job_id, [PartitionOutcome("A", days[1], 10, 0, "x.parquet")])
    store.mark_failed(job.job_id, [("B", days[1])], "boom")

    assert store._conn.execute("SELECT COUNT(*) FROM plans").fetchone() == (2,)
    assert store.totals(job.job_id) == {
        "partitions": 5,
        "bars": 10,
        "rejected": 0,
        "completed": 1,
        "failed": 1,
        "stored": 1,
        "pending": 2,
    }
    assert sorted(store.unstored([job.job_id.value])) == [
        ("A", days[2], job.job_id.value, None),
        ("B", days[1], job.job_id.value, "boom"),
        ("B", days[2], job.job_id.value, None),
    ]
    assert store.first_days([job.job_id.value]) == {"A": DAY}  # B: nothing held
    states = [(p.symbol, p.day, p.state) for p in store.partitions(job.job_id)]
    assert states == [
        ("A", days[0], "STORED"),
        ("A", days[1], "COMPLETED"),
        ("B", days[1], "FAILED"),
        ("A", days[2], "PENDING"),
        ("B", days[2], "PENDING"),
    ]
    # Planned again (a resume) with the failed partition now stored elsewhere: not failed.
    now_stored = np.array([[True, False, False], [False, True, False]])
    store.plan(job.job_id, ["A", "B"], ordinals, asked, now_stored)
    assert sorted(store.unstored([job.job_id.value])) == [
        ("A", days[2], job.job_id.value, None),
        ("B", days[2], job.job_id.value, None),
    ]


def test_unknown_job_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(JobNotFoundError, match="mp jobs list"):
        SqliteJobStore.for_data_dir(tmp_path).get("0123456789ab")


def test_composite_and_generated_ids_live_side_by_side_in_one_store(tmp_path: Path) -> None:
    store = SqliteJobStore.for_data_dir(tmp_path)
    config = IngestionConfiguration(provider="fake")
    composite = IngestionJob("BRK.B_2024-01-02", config, ["BRK.B"], TimeRange(DAY, DAY))
    generated = IngestionJob(IngestionJobId.generate(), config, ["AAPL"], TimeRange(DAY, DAY))
    store.save(composite)
    store.save(generated)
    assert store.get(IngestionJobId("brk.b_2024-01-02")).job_id == composite.job_id
    assert store.get(generated.job_id).symbols == (Symbol("AAPL"),)
    assert {j.job_id.value for j in store.list_jobs()} == {
        "BRK.B_2024-01-02",
        generated.job_id.value,
    }
    store.close()


def test_jobs_made_in_one_second_are_listed_newest_first(tmp_path: Path) -> None:
    store = SqliteJobStore.for_data_dir(tmp_path)
    config = IngestionConfiguration(provider="fake")
    second = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    # Made in the order their ids sort in: newest first is the other way round.
    made = [
        IngestionJob(f"{s}_2024-01-02", config, [s], TimeRange(DAY, DAY), created_at=second)
        for s in ("AAA", "MMM", "ZZZ")
    ]
    for job in made:
        store.save(job)
    made[0].start()
    store.save(made[0])  # saved again later: still the oldest
    assert [j.job_id.value for j in store.list_jobs()] == [
        "ZZZ_2024-01-02",
        "MMM_2024-01-02",
        "AAA_2024-01-02",
    ]
    store.close()


def test_a_full_disk_under_the_event_log_is_one_warning_not_one_traceback_an_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import errno
    import logging

    from marketpipe.jobs.event_bus import EventBus
    from marketpipe.jobs.event_log import EventLog
    from marketpipe.jobs.events import IngestionJobStarted
    from marketpipe.model.values import IngestionJobId

    class Full:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    job = IngestionJobId("0123456789ab")
    bus = EventBus()
    log = EventLog(tmp_path, job)
    log.subscribe(bus)
    log._file = Full()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="marketpipe"):
        for _ in range(230):
            bus.publish(IngestionJobStarted(job_id=job))
    log.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"the job's event log {log.path} cannot be written (No space left on device): "
        "the job goes on without it"
    ]


def test_a_batch_of_events_reaches_the_log_in_one_write_before_publish_returns(
    tmp_path: Path,
) -> None:
    import datetime as dt
    import json

    from marketpipe.jobs.event_bus import EventBus
    from marketpipe.jobs.event_log import EventLog
    from marketpipe.jobs.events import IngestionBatchProcessed, IngestionJobStarted
    from marketpipe.model.partition import IngestionPartition
    from marketpipe.model.values import IngestionJobId, Symbol

    job = IngestionJobId("0123456789ab")
    bus = EventBus()
    log = EventLog(tmp_path, job)
    log.subscribe(bus)
    writes: list[str] = []
    real = log._file
    assert real is not None

    class Counting:
        def write(self, text: str) -> int:
            writes.append(text)
            return real.write(text)

        def flush(self) -> None:
            real.flush()

        def close(self) -> None:
            real.close()

    log._file = Counting()  # type: ignore[assignment]
    day = dt.date(2024, 3, 4)
    events = [
        IngestionBatchProcessed(
            job_id=job,
            symbol=Symbol(f"T{i}"),
            bars_count=i,
            partition=IngestionPartition(Symbol(f"T{i}"), day, f"bars/f{i}.parquet", i),
        )
        for i in range(500)
    ]
    bus.publish_all(events)
    assert len(writes) == 1
    lines = [json.loads(x) for x in log.path.read_text().splitlines()]  # on disk already
    assert [x["symbol"] for x in lines] == [f"T{i}" for i in range(500)]
    assert lines[7]["partition"] == {
        "symbol": "T7",
        "trading_date": "2024-03-04",
        "path": "bars/f7.parquet",
        "bars_count": 7,
    }
    bus.publish(IngestionJobStarted(job_id=job))  # a lone event is written at once too
    assert len(writes) == 2 and len(log.path.read_text().splitlines()) == 501
    log.close()


@pytest.mark.parametrize("path", ["bars/f.parquet", 'bars/"quoted" \\ tab\t é\u2028.parquet'])
def test_a_committed_partitions_line_is_what_the_generic_record_makes_of_it(
    tmp_path: Path, path: str
) -> None:
    """The event of every partition is written by a path of its own (the hot one of a whole
    market's day): the very line any other event's path makes of it, escapes included."""
    import json

    from marketpipe.jobs.event_bus import EventBus
    from marketpipe.jobs.event_log import EventLog, event_record
    from marketpipe.jobs.events import IngestionBatchProcessed
    from marketpipe.model.partition import IngestionPartition
    from marketpipe.model.values import IngestionJobId, Symbol

    job = IngestionJobId("0123456789ab")
    events = [
        IngestionBatchProcessed(
            job_id=job,
            symbol=Symbol(name),
            bars_count=390 + i,
            partition=IngestionPartition(Symbol(name), dt.date(2024, 3, 4 + i), path, 390 + i),
            rejected_count=2 * i,
        )
        for i, name in enumerate(["BRK.B", "T", "A+"])
    ]
    bus = EventBus()
    log = EventLog(tmp_path, job)
    log.subscribe(bus)
    bus.publish_all(events)
    log.close()
    written = log.path.read_text(encoding="utf-8").splitlines()
    assert written == [json.dumps(event_record(e)) for e in events]
    assert json.loads(written[0])["partition"]["trading_date"] == "2024-03-04"
    assert json.loads(written[2])["partition"]["path"] == path


def _with_paths_in_rows(path: Path) -> None:
    """Put a job store back as earlier releases wrote it: each partition naming its file's path
    (and its quarantine file's), a rowid and an index beside the key."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE old (job_id TEXT NOT NULL REFERENCES jobs(id), symbol TEXT NOT NULL,
                day TEXT NOT NULL, state TEXT NOT NULL, bars INTEGER NOT NULL DEFAULT 0,
                rejected INTEGER NOT NULL DEFAULT 0, path TEXT, quarantine TEXT, error TEXT,
                updated_at TEXT NOT NULL, PRIMARY KEY (job_id, symbol, day));
            INSERT INTO old SELECT p.job_id, p.symbol, p.day, p.state, p.bars, p.rejected, f.path,
                q.path, p.error, p.updated_at FROM partitions p LEFT JOIN files f ON f.id = p.file
                LEFT JOIN files q ON q.id = p.quarantine;
            DROP TABLE partitions;
            DROP TABLE files;
            ALTER TABLE old RENAME TO partitions;
            """
        )
    db.close()


def test_a_store_naming_paths_in_every_row_is_upgraded_once_and_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Partitions name their files by id (a whole market's unit writes one file for a few
    hundred partitions): a store of an earlier release is rewritten on first open, and one on a
    read-only medium is read as it is."""
    import sqlite3

    import marketpipe.jobs.partition_files as partition_files
    import marketpipe.jobs.store as store_module

    path = tmp_path / "_marketpipe" / "jobs.sqlite"
    store = SqliteJobStore(path)
    job = IngestionJob(
        job_id=IngestionJobId.generate(),
        symbols=(Symbol("AAPL"), Symbol("MSFT"), Symbol("NVDA")),
        time_range=TimeRange(DAY, DAY),
        configuration=IngestionConfiguration(provider="fake"),
    )
    store.save(job)
    store.mark_completed(
        job.job_id,
        [
            PartitionOutcome("AAPL", DAY, 390, 0, "bars/m/part-1.parquet"),
            PartitionOutcome("MSFT", DAY, 389, 1, "bars/m/part-1.parquet", "_marketpipe/q/1.csv"),
        ],
    )
    store.mark_failed(job.job_id, [("NVDA", DAY)], "refused")
    before = store.partitions(job.job_id)
    assert [(p.path, p.quarantine) for p in before] == [
        ("bars/m/part-1.parquet", None),
        ("bars/m/part-1.parquet", "_marketpipe/q/1.csv"),
        (None, None),
    ]
    assert store.completed_paths() == ["bars/m/part-1.parquet"]
    store.close()
    _with_paths_in_rows(path)

    monkeypatch.setattr(store_module, "writable", lambda folder: False)
    read_only = SqliteJobStore(path)  # as it is: nothing may be written
    assert read_only.partitions(job.job_id) == before
    assert read_only.completed_at("bars/m/part-1.parquet") == [
        (job.job_id.value, "AAPL", DAY, 390),
        (job.job_id.value, "MSFT", DAY, 389),
    ]
    read_only.close()
    monkeypatch.undo()

    # A large store's rewrite is said first, in one line (here: 3 partitions count as large).
    monkeypatch.setattr(partition_files, "UPGRADED_A_SECOND", 0.5)
    with caplog.at_level(logging.WARNING, logger="marketpipe.jobs.partition_files"):
        upgraded = SqliteJobStore(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: the job store names each file once from this release on: rewriting its 3 "
        "partitions, once (about 6 s)"
    ]
    assert upgraded.partitions(job.job_id) == before
    assert upgraded.completed_paths() == ["bars/m/part-1.parquet"]
    assert upgraded.totals(job.job_id)["bars"] == 779
    upgraded.rewrite_paths(lambda provider, job_id, p: p.replace("bars/m/", "bars/n/"))
    assert upgraded.completed_paths() == ["bars/n/part-1.parquet"]
    upgraded.close()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(partitions)")}
        files = sorted(p for (p,) in db.execute("SELECT path FROM files"))
    db.close()
    assert "path" not in columns and "file" in columns
    assert files == ["_marketpipe/q/1.csv", "bars/n/part-1.parquet"]  # the old name let go
    caplog.clear()
    assert SqliteJobStore(path).partitions(job.job_id)[1].quarantine == "_marketpipe/q/1.csv"
    assert caplog.records == []  # once
