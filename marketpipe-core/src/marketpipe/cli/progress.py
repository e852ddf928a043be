"""A rich progress bar driven by the job's events."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from marketpipe.cli.common import err_console
from marketpipe.ingestion.domain.events import (
    IngestionBatchProcessed,
    IngestionJobPlanned,
    IngestionPartitionFailed,
)
from marketpipe.ingestion.infrastructure.event_bus import EventBus


class ProgressDisplay:
    """Partitions done out of planned, bars so far; a subscriber of the event bus."""

    def __init__(self, bus: EventBus, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("partitions · {task.fields[bars]:,} bars · {task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task("ingest", total=None, bars=0, failed=0)
        self._bars = 0
        self._failed = 0
        bus.subscribe(IngestionJobPlanned, self._planned)
        bus.subscribe(IngestionBatchProcessed, self._processed)
        bus.subscribe(IngestionPartitionFailed, self._failed_one)

    def _planned(self, event: IngestionJobPlanned) -> None:
        self.progress.start()  # only once there is work: errors before it print alone
        done = event.partitions_total - event.partitions_pending
        self.progress.update(self.task, total=event.partitions_total, completed=done)

    def _processed(self, event: IngestionBatchProcessed) -> None:
        self._bars += event.bars_count
        self.progress.update(self.task, advance=1, bars=self._bars)

    def _failed_one(self, event: IngestionPartitionFailed) -> None:
        self._failed += 1
        self.progress.update(self.task, advance=1, failed=self._failed)

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
