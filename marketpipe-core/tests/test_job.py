import pytest
from marketpipe.ingestion import (
    IngestionConfiguration,
    IngestionJob,
    IngestionJobId,
    IngestionPartition,
    ProcessingState,
    Symbol,
    TimeRange,
)
from marketpipe.model.errors import InvalidStateTransition


def make_job() -> IngestionJob:
    return IngestionJob(
        job_id=IngestionJobId.generate(),
        symbols=(Symbol("AAPL"),),
        time_range=TimeRange.single_day("2024-01-02"),
        configuration=IngestionConfiguration(provider="fake"),
    )


def test_happy_path_transitions_and_counts() -> None:
    job = make_job()
    assert job.state is ProcessingState.PENDING
    job.start()
    partition = IngestionPartition(Symbol("AAPL"), job.time_range.start, "x.parquet", 390)
    job.mark_symbol_processed(Symbol("AAPL"), 390, partition)
    job.complete()
    assert job.state is ProcessingState.COMPLETED
    assert (job.bars_processed, job.partitions_processed) == (390, 1)
    assert job.completed_at is not None


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ([], "complete"),
        ([], "mark"),
        (["start", "complete"], "start"),
        (["start", "complete"], "fail"),
        (["start", "complete"], "cancel"),
        (["cancel"], "complete"),
    ],
)
def test_invalid_transitions_raise(setup: list[str], action: str) -> None:
    job = make_job()
    for step in setup:
        getattr(job, step)()
    partition = IngestionPartition(Symbol("AAPL"), job.time_range.start)
    calls = {
        "start": job.start,
        "complete": job.complete,
        "fail": lambda: job.fail("x"),
        "cancel": job.cancel,
        "mark": lambda: job.mark_symbol_processed(Symbol("AAPL"), 1, partition),
    }
    with pytest.raises(InvalidStateTransition):
        calls[action]()


def test_failed_or_cancelled_jobs_can_be_started_again_to_resume() -> None:
    job = make_job()
    job.start()
    job.fail("provider down")
    assert job.error_message == "provider down"
    job.start()
    assert job.state is ProcessingState.IN_PROGRESS and job.error_message is None
    job.cancel()
    job.start()
    assert job.state is ProcessingState.IN_PROGRESS


def test_the_job_records_its_events_in_order_and_clears_them_once_pulled() -> None:
    from marketpipe.ingestion import (
        IngestionBatchProcessed,
        IngestionJobCompleted,
        IngestionJobStarted,
    )

    job = make_job()
    assert job.domain_events == ()
    job.start()
    partition = IngestionPartition(Symbol("AAPL"), job.time_range.start, "x.parquet", 390)
    job.mark_symbol_processed(Symbol("AAPL"), 390, partition)
    job.complete()
    events = job.domain_events
    assert [type(e) for e in events] == [
        IngestionJobStarted,
        IngestionBatchProcessed,
        IngestionJobCompleted,
    ]
    assert events[1].partition == partition and events[1].bars_count == 390  # type: ignore[attr-defined]
    assert events[2].total_bars == 390 and events[2].partitions_processed == 1  # type: ignore[attr-defined]
    assert job.pull_domain_events() == list(events)
    assert job.domain_events == ()


def test_fail_and_cancel_record_their_events() -> None:
    from marketpipe.ingestion import IngestionJobCancelled, IngestionJobFailed

    failed = make_job()
    failed.start()
    failed.clear_domain_events()
    failed.fail("provider down", partitions_failed=3)
    (event,) = failed.domain_events
    assert isinstance(event, IngestionJobFailed)
    assert (event.error_message, event.partitions_failed) == ("provider down", 3)
    cancelled = make_job()
    cancelled.cancel(partitions_remaining=2)
    (event,) = cancelled.domain_events
    assert isinstance(event, IngestionJobCancelled) and event.partitions_remaining == 2


def test_a_refused_transition_records_nothing() -> None:
    job = make_job()
    with pytest.raises(InvalidStateTransition):
        job.complete()
    assert job.domain_events == ()


def test_positional_and_keyword_construction_are_the_same_job() -> None:
    job_id = IngestionJobId("AAPL_2024-01-02")
    config = IngestionConfiguration(provider="fake")
    positional = IngestionJob(job_id, config, [Symbol("AAPL")], TimeRange.single_day("2024-01-02"))
    keyword = IngestionJob(
        job_id=job_id,
        configuration=config,
        symbols=(Symbol("AAPL"),),
        time_range=TimeRange.single_day("2024-01-02"),
        created_at=positional.created_at,
    )
    assert positional == keyword and positional.symbols == (Symbol("AAPL"),)


def test_a_composite_job_id_s_start_names_its_symbol_and_day() -> None:
    import datetime as dt

    job = IngestionJob(
        "msft_2024-01-03",
        IngestionConfiguration(provider="fake"),
        "MSFT",
        TimeRange.single_day("2024-01-03"),
    )
    assert job.job_id.value == "MSFT_2024-01-03"
    job.start()
    (event,) = job.domain_events
    assert event.symbol == Symbol("MSFT") and event.trading_date == dt.date(2024, 1, 3)  # type: ignore[attr-defined]


def test_a_units_partitions_are_marked_together_as_one_at_a_time_would() -> None:
    import datetime as dt

    from marketpipe.jobs.events import IngestionBatchProcessed, IngestionJobStarted

    job = make_job()
    with pytest.raises(InvalidStateTransition):
        job.mark_partitions_processed([])  # not running: refused, nothing recorded
    job.start()
    job.pull_domain_events()
    days = (dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    job.begin_unit((Symbol("AAPL"), Symbol("MSFT")), days)
    parts = [
        (IngestionPartition(Symbol(s), d, "x.parquet", bars), rejected)
        for s, d, bars, rejected in [("AAPL", days[0], 390, 0), ("MSFT", days[1], 389, 1)]
    ]
    job.mark_partitions_processed(parts)
    assert (job.bars_processed, job.partitions_processed) == (779, 2)
    events = job.pull_domain_events()
    starts = [e for e in events if isinstance(e, IngestionJobStarted)]
    assert [(e.symbol.value, e.trading_date) for e in starts if e.symbol] == [
        ("AAPL", days[0]), ("AAPL", days[1]), ("MSFT", days[0]), ("MSFT", days[1])
    ]  # fmt: skip
    done = [e for e in events if isinstance(e, IngestionBatchProcessed)]
    assert [(e.symbol.value, e.bars_count, e.rejected_count) for e in done] == [
        ("AAPL", 390, 0), ("MSFT", 389, 1)
    ]  # fmt: skip
    assert done[0].partition is parts[0][0] and done[0].occurred_at == done[1].occurred_at
