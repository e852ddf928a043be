import pytest
from marketpipe.errors import InvalidStateTransition
from marketpipe.ingestion import (
    IngestionConfiguration,
    IngestionJob,
    IngestionJobId,
    IngestionPartition,
    ProcessingState,
    Symbol,
    TimeRange,
)


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
