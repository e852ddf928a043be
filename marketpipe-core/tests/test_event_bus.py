"""The in-process event bus: each event to the handlers of its type and its bases, in the order
they subscribed, then the flushes; the handlers of a type are found once and found again when
one more subscribes; a subscriber that sums a publish (metrics, the progress bar) shows it at
the flush."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.events import (
    DomainEvent,
    IngestionBatchProcessed,
    IngestionJobStarted,
    IngestionPartitionFailed,
)
from marketpipe.model.partition import IngestionPartition
from marketpipe.model.values import IngestionJobId, Symbol

JOB = IngestionJobId("0123456789ab")


def processed(bars: int, rejected: int = 0) -> IngestionBatchProcessed:
    part = IngestionPartition(Symbol("AAPL"), dt.date(2024, 3, 4), "bars/f.parquet", bars)
    return IngestionBatchProcessed(
        job_id=JOB, symbol=Symbol("AAPL"), bars_count=bars, partition=part, rejected_count=rejected
    )


def test_events_reach_their_types_handlers_in_order_and_a_late_subscriber_too() -> None:
    bus, seen = EventBus(), []
    bus.subscribe(DomainEvent, lambda e: seen.append(("any", e.name)))
    bus.subscribe(IngestionBatchProcessed, lambda e: seen.append(("processed", e.bars_count)))
    bus.on_flush(lambda: seen.append(("flush", None)))
    bus.publish_all([IngestionJobStarted(job_id=JOB), processed(390)])
    assert seen == [
        ("any", "IngestionJobStarted"),
        ("any", "IngestionBatchProcessed"),
        ("processed", 390),
        ("flush", None),
    ]
    seen.clear()
    bus.subscribe(IngestionJobStarted, lambda e: seen.append(("started", e.name)))
    bus.subscribe(DomainEvent, lambda e: seen.append(("late", e.name)))
    bus.publish_all([IngestionJobStarted(job_id=JOB), processed(1)])
    assert seen == [
        ("any", "IngestionJobStarted"),
        ("started", "IngestionJobStarted"),
        ("late", "IngestionJobStarted"),
        ("any", "IngestionBatchProcessed"),
        ("processed", 1),
        ("late", "IngestionBatchProcessed"),
        ("flush", None),
    ]


def test_a_failing_handler_or_flush_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, seen = EventBus(), []

    def broken(_: object = None) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(DomainEvent, broken)
    bus.subscribe(DomainEvent, lambda e: seen.append(e.name))
    bus.on_flush(broken)
    bus.on_flush(lambda: seen.append("flushed"))
    with caplog.at_level(logging.ERROR, logger="marketpipe"):
        bus.publish_all([IngestionJobStarted(job_id=JOB), processed(5)])
    assert seen == ["IngestionJobStarted", "IngestionBatchProcessed", "flushed"]
    failures = [r.getMessage() for r in caplog.records]
    assert len(failures) == 3
    assert failures[0].endswith("failed on IngestionJobStarted")
    assert failures[2].endswith("failed on flush")


def test_metrics_count_a_publish_at_its_flush() -> None:
    from marketpipe.fetch.metrics import BARS_WRITTEN, PARTITIONS, ROWS_REJECTED
    from marketpipe.run.metrics import MetricsSubscriber

    provider = "bus-test-provider"
    bus = EventBus()
    MetricsSubscriber(provider).subscribe(bus)

    def value(counter: object, *labels: str) -> float:
        return counter.labels(*labels)._value.get()  # type: ignore[attr-defined,no-any-return]

    failed = IngestionPartitionFailed(
        job_id=JOB, symbol=Symbol("MSFT"), trading_date=dt.date(2024, 3, 4), error_message="x"
    )
    bus.publish_all([processed(390, 2), processed(10), failed])
    bus.publish_all([processed(7, 1)])
    assert value(BARS_WRITTEN, provider) == 407
    assert value(ROWS_REJECTED, provider) == 3
    assert value(PARTITIONS, provider, "COMPLETED") == 3
    assert value(PARTITIONS, provider, "FAILED") == 1


def test_the_progress_bar_shows_a_publish_at_its_flush() -> None:
    from marketpipe.cli.progress import ProgressDisplay
    from marketpipe.jobs.events import IngestionJobPlanned

    bus = EventBus()
    display = ProgressDisplay(bus, enabled=False)
    updates: list[dict[str, object]] = []
    real = display.progress.update
    display.progress.update = lambda task, **kw: (updates.append(kw), real(task, **kw))[1]  # type: ignore[method-assign]
    bus.publish(IngestionJobPlanned(job_id=JOB, partitions_total=10, partitions_pending=8, units=2))
    bus.publish_all([processed(390), processed(389)])
    task = display.progress.tasks[0]
    assert (task.total, task.completed, task.fields["bars"]) == (10, 4, 779)
    assert updates[-1] == {"completed": 4, "bars": 779}  # one update for the publish
    assert len(updates) == 2


def test_a_failed_partition_among_a_publishs_partitions_shows_them_all() -> None:
    from marketpipe.cli.progress import ProgressDisplay
    from marketpipe.jobs.events import IngestionJobPlanned

    bus = EventBus()
    display = ProgressDisplay(bus, enabled=False)
    bus.publish(IngestionJobPlanned(job_id=JOB, partitions_total=5, partitions_pending=5, units=1))
    failed = IngestionPartitionFailed(
        job_id=JOB, symbol=Symbol("MSFT"), trading_date=dt.date(2024, 3, 4), error_message="x"
    )
    bus.publish_all([processed(390), failed, processed(10)])
    task = display.progress.tasks[0]
    assert (task.completed, task.fields["bars"], task.fields["failed"]) == (3, 400, 1)
