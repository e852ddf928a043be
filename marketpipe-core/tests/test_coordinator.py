import asyncio
import datetime as dt
from pathlib import Path

import attrs
import duckdb
import numpy as np
import pytest
from core_helpers import StepProvider
from marketpipe.ingestion import (
    CreateIngestionJobCommand,
    DomainEvent,
    IngestionBatchProcessed,
    IngestionConfiguration,
    IngestionJobCompleted,
    IngestionJobFailed,
    IngestionJobPlanned,
    IngestionJobService,
    IngestionJobStarted,
    ProcessingState,
    StartJobCommand,
    Symbol,
    Timeframe,
    TimeRange,
)
from marketpipe.ingestion.infrastructure import register, unregister
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.events import IngestionProviderNote
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.errors import InvalidInputError
from marketpipe.plugins.registry import prepare_provider
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.run.pipeline import IngestRequest, execute, run_ingest

JAN = TimeRange("2024-01-29", "2024-02-02")  # 5 sessions across a month boundary


def request(data_dir: Path, **kw: object) -> IngestRequest:
    base = dict(
        provider="step", symbols=(Symbol("AAPL"), Symbol("MSFT")), time_range=JAN, data_dir=data_dir
    )
    base.update(kw)
    return IngestRequest(**base)  # type: ignore[arg-type]


def recording_bus() -> tuple[EventBus, list[DomainEvent]]:
    bus, seen = EventBus(), []
    bus.subscribe(DomainEvent, seen.append)
    return bus, seen


def test_job_commits_every_partition_then_publishes_in_order(step_provider, data_dir: Path) -> None:
    bus, seen = recording_bus()
    summary = asyncio.run(run_ingest(request(data_dir), bus))
    assert summary.state is ProcessingState.COMPLETED
    assert (summary.partitions_total, summary.partitions_completed, summary.bars) == (10, 10, 3900)
    kinds = [type(e) for e in seen]
    # The job's own start, its plan, then each partition's start and processed event.
    assert kinds[:2] == [IngestionJobStarted, IngestionJobPlanned]
    assert kinds[-1] is IngestionJobCompleted
    job_start = seen[0]
    assert isinstance(job_start, IngestionJobStarted) and job_start.symbol is None
    starts = [e for e in seen if isinstance(e, IngestionJobStarted) and e.symbol is not None]
    assert len(starts) == 10 and kinds.count(IngestionBatchProcessed) == 10
    processed = [e for e in seen if isinstance(e, IngestionBatchProcessed)]
    assert all((data_dir / e.partition.path).is_file() for e in processed)
    # A partition's start precedes its processed event.
    first_done = kinds.index(IngestionBatchProcessed)
    assert IngestionJobStarted in kinds[:first_done]
    rows = duckdb.sql(
        f"SELECT count(*), count(DISTINCT (symbol, timestamp)) FROM read_parquet("
        f"'{data_dir}/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert rows == [(3900, 3900)]
    store = SqliteJobStore.for_data_dir(data_dir)
    assert store.totals(summary.job_id)["completed"] == 10


def test_units_group_partitions_within_a_month_and_respect_batch_size(
    step_provider, data_dir: Path
) -> None:
    asyncio.run(run_ingest(request(data_dir, batch_size=390 * 3)))
    units = step_provider
    assert {len({w.day.month for w in u.windows}) for u in units} == {1}
    assert all(len(u.symbols) * sum(w.minutes for w in u.windows) <= 390 * 3 for u in units)
    assert sorted((s.value, w.day) for u in units for s in u.symbols for w in u.windows) == sorted(
        (s, d)
        for s in ("AAPL", "MSFT")
        for d in [
            dt.date(2024, 1, 29),
            dt.date(2024, 1, 30),
            dt.date(2024, 1, 31),
            dt.date(2024, 2, 1),
            dt.date(2024, 2, 2),
        ]
    )


def test_failed_partitions_are_reported_and_resume_fetches_only_them(
    step_provider, data_dir: Path
) -> None:
    bus, seen = recording_bus()
    summary = asyncio.run(run_ingest(request(data_dir, overrides={"fail_symbol": "MSFT"}), bus))
    assert summary.state is ProcessingState.FAILED
    assert summary.partitions_completed == 5 and len(summary.failures) == 5
    assert {f.symbol for f in summary.failures} == {"MSFT"}
    assert "SymbolError: upstream refused MSFT" in summary.failures[0].error
    failed = [e for e in seen if isinstance(e, IngestionJobFailed)]
    assert len(failed) == 1 and "5 of 10 partitions failed" in failed[0].error_message

    store = SqliteJobStore.for_data_dir(data_dir)
    assert {p.symbol for p in store.partitions(summary.job_id) if p.state == "FAILED"} == {"MSFT"}
    step_provider.clear()
    prepared = prepare_provider("step", {})
    job = asyncio.run(IngestionJobService(store).start_job(StartJobCommand(summary.job_id)))
    assert job.state is ProcessingState.IN_PROGRESS
    resumed = asyncio.run(execute(store, job, prepared, data_dir, EventBus()))
    assert resumed.state is ProcessingState.COMPLETED
    assert resumed.partitions_skipped == 5 and resumed.partitions_completed == 5
    assert {s.value for u in step_provider for s in u.symbols} == {"MSFT"}
    assert store.get(summary.job_id).bars_processed == 3900


def test_rejected_rows_go_to_quarantine_with_reasons(data_dir: Path) -> None:
    class Dirty(StepProvider):
        def fetch(self, request):
            for batch in super().fetch(request):
                volume = batch.column("volume").to_numpy().copy()
                volume[:3] = -1
                yield batch.set_column(6, "volume", __import__("pyarrow").array(volume))

    register(ProviderSpec(name="dirty", factory=lambda s: Dirty(), description="x"))
    try:
        summary = asyncio.run(
            run_ingest(
                request(data_dir, provider="dirty", time_range=TimeRange.single_day("2024-01-29"))
            )
        )
    finally:
        unregister("dirty")
    assert summary.state is ProcessingState.COMPLETED
    assert summary.rejected == 6 and summary.bars == 2 * 387
    store = SqliteJobStore.for_data_dir(data_dir)
    parts = store.partitions(summary.job_id)
    assert all(p.rejected == 3 and p.quarantine for p in parts)
    text = (data_dir / parts[0].quarantine).read_text()
    assert text.count("volume missing or negative") == 3
    assert not list((data_dir / "_marketpipe").rglob("*.parquet"))  # never read as bars


def test_a_failing_subscriber_does_not_break_the_job(step_provider, data_dir: Path) -> None:
    bus, seen = recording_bus()

    def explode(event: DomainEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(IngestionBatchProcessed, explode)
    summary = asyncio.run(run_ingest(request(data_dir), bus))
    assert summary.state is ProcessingState.COMPLETED
    assert sum(isinstance(e, IngestionBatchProcessed) for e in seen) == 10


def test_secret_options_never_reach_the_job_store_or_files(step_provider, data_dir: Path) -> None:
    summary = asyncio.run(run_ingest(request(data_dir, overrides={"token": "TOPSECRET-77"})))
    assert summary.state is ProcessingState.COMPLETED
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert b"TOPSECRET-77" not in path.read_bytes(), path


def test_job_service_refuses_a_timeframe_the_provider_lacks(data_dir: Path) -> None:
    register(
        ProviderSpec(
            name="daily", factory=lambda s: StepProvider(), description="x", timeframes=["1d"]
        )
    )
    try:
        service = IngestionJobService(SqliteJobStore.for_data_dir(data_dir))
        command = CreateIngestionJobCommand(
            "AAPL", JAN, IngestionConfiguration(provider="daily", timeframe=Timeframe.M1)
        )
        with pytest.raises(InvalidInputError, match="has no 1m bars; it offers 1d"):
            asyncio.run(service.create_job(command))
    finally:
        unregister("daily")


def test_seed_per_bar_api_returns_objects(step_provider) -> None:
    bars = StepProvider().fetch_bars_for_symbol_sync("aapl", TimeRange.single_day("2024-01-29"), 5)
    awaited = asyncio.run(
        StepProvider().fetch_bars_for_symbol("aapl", TimeRange.single_day("2024-01-29"))
    )
    assert len(awaited) == 390 and awaited[:5] == bars
    assert len(bars) == 5 and bars[0].symbol == Symbol("AAPL")
    assert bars[0].low <= bars[0].open <= bars[0].high
    assert np.isclose(bars[1].open - bars[0].open, 0.01)


def test_a_provider_user_error_fails_its_unit_without_retrying_each_symbol(
    data_dir: Path,
) -> None:
    from marketpipe.model.errors import ProviderNotConfiguredError

    class Refused(StepProvider):
        def fetch(self, request):
            self.calls.append(request)
            raise ProviderNotConfiguredError("wrong API key: set MARKETPIPE_REFUSED_KEY")

    calls: list = []
    register(ProviderSpec(name="refused", factory=lambda s: Refused(calls=calls), description="x"))
    try:
        summary = asyncio.run(
            run_ingest(
                request(data_dir, provider="refused", time_range=TimeRange.single_day("2024-01-29"))
            )
        )
    finally:
        unregister("refused")
    assert summary.state is ProcessingState.FAILED
    assert len(calls) == 1  # one unit, no retries, no per-symbol split
    assert {f.error for f in summary.failures} == {
        "ProviderNotConfiguredError: wrong API key: set MARKETPIPE_REFUSED_KEY"
    }


def _bars_by_symbol(data_dir: Path) -> dict[str, int]:
    return dict(
        duckdb.sql(
            f"SELECT symbol, count(*) FROM read_parquet('{data_dir}/**/*.parquet', "
            "hive_partitioning=true) GROUP BY symbol"
        ).fetchall()
    )


def test_a_refetch_with_no_bars_keeps_the_stored_rows_and_says_so(
    step_provider, data_dir: Path
) -> None:
    asyncio.run(run_ingest(request(data_dir)))
    assert _bars_by_symbol(data_dir) == {"AAPL": 1950, "MSFT": 1950}
    bus, seen = recording_bus()
    again = request(data_dir, time_range=TimeRange("2024-01-30", "2024-02-01"))
    refetch = attrs.evolve(again, overrides={"empty_symbol": "MSFT"}, refresh=True)
    summary = asyncio.run(run_ingest(refetch, bus))
    assert summary.state is ProcessingState.COMPLETED
    assert _bars_by_symbol(data_dir) == {"AAPL": 1950, "MSFT": 1950}  # nothing wiped
    (note,) = [n for n in summary.notes if "stored rows were kept" in n]
    assert "no bars for 3 partitions" in note and "MSFT 2024-01-30" in note
    assert any(isinstance(e, IngestionProviderNote) and e.message == note for e in seen)
    log = (data_dir / "_marketpipe" / "events" / f"job={summary.job_id}.jsonl").read_text()
    assert "stored rows were kept" in log

    cleared = attrs.evolve(refetch, replace_empty=True)
    summary = asyncio.run(run_ingest(cleared))
    assert summary.state is ProcessingState.COMPLETED and not summary.notes
    assert _bars_by_symbol(data_dir) == {"AAPL": 1950, "MSFT": 2 * 390}


def test_provider_messages_are_scrubbed_of_secrets_and_url_credentials(data_dir: Path) -> None:
    from marketpipe.model.errors import ProviderError
    from marketpipe.model.secrets import Secret
    from marketpipe.plugins.specs import Setting

    class Leaky(StepProvider):
        def fetch(self, request):
            token = self.token.get_secret_value() if isinstance(self.token, Secret) else ""
            raise ProviderError(
                f"server said: token {token} refused at https://alice:pa55word@api.test/v2"
            )

    register(
        ProviderSpec(
            name="leaky",
            factory=lambda s: Leaky(token=s.get("token")),
            description="x",
            settings=(Setting("token", "a secret", secret=True),),
        )
    )
    try:
        summary = asyncio.run(
            run_ingest(
                request(
                    data_dir,
                    provider="leaky",
                    overrides={"token": "TOPSECRET-99"},
                    time_range=TimeRange.single_day("2024-01-29"),
                )
            )
        )
    finally:
        unregister("leaky")
    assert summary.state is ProcessingState.FAILED
    error = summary.failures[0].error
    assert "TOPSECRET-99" not in error and "pa55word" not in error
    assert "token ********** refused at https://**********@api.test/v2" in error
    for path in data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert b"TOPSECRET-99" not in raw and b"pa55word" not in raw, path


def test_urls_with_credentials_are_stored_without_them(step_provider, data_dir: Path) -> None:
    from marketpipe.model.secrets import scrub

    assert scrub("see http://u:p@h.test/x and ftp://user@h") == (
        "see http://**********@h.test/x and ftp://**********@h"
    )
    assert scrub("a key ABCD1234 here", ["ABCD1234"]) == "a key ********** here"


def test_an_absurd_symbol_from_the_provider_is_a_rejected_row_not_a_file_name_error(
    data_dir: Path,
) -> None:
    import pyarrow as pa

    class Absurd(StepProvider):
        def fetch(self, request):
            for batch in super().fetch(request):
                n = batch.num_rows
                yield batch.set_column(0, "symbol", pa.array(["X" * 5000 + "/../.."] * n))

    register(ProviderSpec(name="absurd", factory=lambda s: Absurd(), description="x"))
    try:
        summary = asyncio.run(
            run_ingest(
                request(
                    data_dir,
                    provider="absurd",
                    symbols=(Symbol("AAPL"),),
                    time_range=TimeRange.single_day("2024-01-29"),
                )
            )
        )
    finally:
        unregister("absurd")
    assert summary.state is ProcessingState.COMPLETED
    assert summary.bars == 0 and summary.rejected == 390
    (quarantined,) = list((data_dir / "_marketpipe" / "quarantine").rglob("*.csv"))
    assert all(len(part) <= 130 for part in quarantined.parts)


def test_a_job_store_that_fails_under_one_unit_ends_the_job_after_every_commit_in_flight(
    step_provider, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk found by the job store while another unit still commits: the job ends (and
    the sink is closed) only once that commit is over. Closing the catalog's connection under a
    commit killed the process with SIGSEGV one run in twelve."""
    import sqlite3
    import threading

    from marketpipe.storage.parquet_sink import ParquetSink

    failed, closed = threading.Event(), threading.Event()
    in_commit: list[int] = []
    at_close: list[int] = []
    commit, close = ParquetSink.commit, ParquetSink.close

    def slow_january(self: ParquetSink, req: object) -> object:
        in_commit.append(1)
        try:
            days = [d for days in req.coverage.values() for d in days]  # type: ignore[attr-defined]
            if days and days[0].month == 1:
                assert failed.wait(10)  # February's unit fails first
                closed.wait(0.5)  # a sink closed meanwhile would be seen here
            return commit(self, req)  # type: ignore[arg-type]
        finally:
            in_commit.pop()

    def closing(self: ParquetSink) -> None:
        at_close.append(len(in_commit))
        closed.set()
        close(self)

    def full(self: SqliteJobStore, job_id: object, outcomes: list) -> None:
        if any(o.day.month == 2 for o in outcomes):
            failed.set()
            raise sqlite3.OperationalError("database or disk is full")
        mark_completed(self, job_id, outcomes)

    mark_completed = SqliteJobStore.mark_completed
    monkeypatch.setattr(ParquetSink, "commit", slow_january)
    monkeypatch.setattr(ParquetSink, "close", closing)
    monkeypatch.setattr(SqliteJobStore, "mark_completed", full)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        asyncio.run(run_ingest(request(data_dir, max_concurrency=2)))
    assert at_close and at_close[-1] == 0  # no commit was running when the sink closed
    store = SqliteJobStore.for_data_dir(data_dir)
    (job,) = store.list_jobs()
    assert job.state is ProcessingState.FAILED
    assert "disk is full" in (job.error_message or "")


def test_a_refresh_that_fails_shows_none_of_itself_until_its_resume_completes(
    step_provider, data_dir: Path
) -> None:
    """A refresh is staged: while one symbol's partitions fail, the other symbol's refetched
    partitions are not shown either (each is still read from the first job's file); resumed
    and completed, every partition is the refresh's."""
    from marketpipe.storage.parquet_sink import ParquetSink

    days = [dt.date(2024, 1, d) for d in (29, 30, 31)] + [dt.date(2024, 2, d) for d in (1, 2)]
    keys = [(s, d) for s in ("AAPL", "MSFT") for d in days]
    first = asyncio.run(run_ingest(request(data_dir), EventBus()))
    sink = ParquetSink(data_dir)
    (series,) = sink.catalog.series()

    def jobs_shown() -> set[str]:  # the jobs whose files the catalog reads the partitions from
        sink.catalog.sync(series)
        return {p.path.rsplit("/", 1)[-1].split("-")[1] for p in sink.catalog.lookup(series, keys)}

    assert jobs_shown() == {first.job_id.value}
    failed = asyncio.run(
        run_ingest(request(data_dir, refresh=True, overrides={"fail_symbol": "MSFT"}), EventBus())
    )
    assert failed.state is ProcessingState.FAILED and failed.partitions_completed == 5
    assert jobs_shown() == {first.job_id.value}  # AAPL's refetched days: staged, not shown
    store = SqliteJobStore.for_data_dir(data_dir)
    job = asyncio.run(IngestionJobService(store).start_job(StartJobCommand(failed.job_id)))
    resumed = asyncio.run(execute(store, job, prepare_provider("step", {}), data_dir, EventBus()))
    assert resumed.state is ProcessingState.COMPLETED
    assert jobs_shown() == {failed.job_id.value}  # every partition of both symbols, at once
    assert not list(data_dir.rglob("*.staged"))
    sink.close()
