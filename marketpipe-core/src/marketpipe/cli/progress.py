"""A rich progress bar driven by the job's events, plus providers' long operations (downloads,
decoding) on lines of their own with sizes and a transfer rate."""

from __future__ import annotations

from rich.console import RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from marketpipe.cli.common import err_console
from marketpipe.fetch import progress as provider_progress
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.events import (
    IngestionBatchProcessed,
    IngestionJobPlanned,
    IngestionPartitionFailed,
)


class _DetailColumn(ProgressColumn):
    """Partitions and bars for the job's line; bytes and rate for a provider's operation."""

    def __init__(self) -> None:
        super().__init__()
        self._size = DownloadColumn()
        self._speed = TransferSpeedColumn()

    def render(self, task: Task) -> RenderableType:
        if task.fields.get("unit") == "bytes":
            return Text.assemble(self._size.render(task), " ", self._speed.render(task))
        total = "?" if task.total is None else f"{int(task.total):,}"
        # Short enough for 80 columns: partitions done/planned, bars, failures if any.
        failed = task.fields.get("failed", 0)
        return Text(
            f"{int(task.completed):,}/{total} · {task.fields.get('bars', 0):,} "
            f"{task.fields.get('rows', 'bars')}" + (f" · {failed:,} failed" if failed else "")
        )


class ProgressDisplay:
    """Partitions done out of planned, bars so far; a subscriber of the event bus. Also the
    :mod:`marketpipe.fetch.progress` reporter while it is entered."""

    def __init__(self, bus: EventBus, enabled: bool = True, rows: str = "bars") -> None:
        """``rows``: what the job's rows are called (``bars``, ``trades``, ``quotes``)."""
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=12),
            _DetailColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=not enabled,
            transient=False,
        )
        self.task_id = self.progress.add_task("ingest", total=None, bars=0, failed=0, rows=rows)
        self._bars = 0
        self._failed = 0
        self._total = 0
        self._done = 0
        self._previous: provider_progress.Reporter | None = None
        bus.subscribe(IngestionJobPlanned, self._planned)
        bus.subscribe(IngestionBatchProcessed, self._processed)
        bus.subscribe(IngestionPartitionFailed, self._failed_one)
        bus.on_flush(self._flush)
        self._shown = 0  # partitions done as the display last showed them

    def _planned(self, event: IngestionJobPlanned) -> None:
        # Several jobs (``mp update``, one per series) add up on one line.
        self.progress.start()  # only once there is work: errors before it print alone
        self._total += event.partitions_total
        self._done += event.partitions_total - event.partitions_pending
        self._shown = self._done
        self.progress.update(self.task_id, total=self._total, completed=self._done)

    def _processed(self, event: IngestionBatchProcessed) -> None:
        # Shown once the publish ends (``_flush``): a unit's partitions arrive together, and
        # updating the display for each took 5 us a partition on the job's event loop.
        self._done += 1
        self._bars += event.bars_count

    def _flush(self) -> None:
        if self._done != self._shown:
            self._shown = self._done
            self.progress.update(self.task_id, completed=self._done, bars=self._bars)

    def _failed_one(self, event: IngestionPartitionFailed) -> None:
        self._done += 1
        self._failed += 1
        self._shown = self._done
        self.progress.update(
            self.task_id, completed=self._done, bars=self._bars, failed=self._failed
        )

    def task(self, description: str, total: int | None, unit: str) -> _Task:
        self.progress.start()
        return _Task(self.progress, self.progress.add_task(description, total=total, unit=unit))

    def __enter__(self) -> ProgressDisplay:
        self._previous = provider_progress.set_reporter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        provider_progress.set_reporter(self._previous)
        self.progress.stop()


class _Task:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def update(self, completed: int, total: int | None = None) -> None:
        if total is not None:
            self._progress.update(self._task, completed=completed, total=total)
        else:
            self._progress.update(self._task, completed=completed)

    def close(self) -> None:
        self._progress.remove_task(self._task)
