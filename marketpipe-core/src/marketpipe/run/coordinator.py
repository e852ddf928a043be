"""``IngestionCoordinatorService``: plan, fetch, validate, commit, checkpoint, publish.

For each unit of work, in this order: the provider fetches it; the validators split its rows into
valid and rejected; rejected rows go to quarantine; the sink commits the valid rows atomically;
the job store records all the unit's partitions complete in one transaction; then the events are
published. A crash between any two steps leaves old or replayable state, never a checkpoint ahead
of its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from marketpipe.fetch import metrics
from marketpipe.fetch.deadline import job_deadline
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.job import IngestionJob, ProcessingState
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.calendar import TradingCalendar, nyse_calendar
from marketpipe.model.errors import (
    StorageError,
    StoreFailedError,
    SymbolError,
    TemporaryError,
    UserError,
)
from marketpipe.model.partition import IngestionPartition, PartitionKey
from marketpipe.model.request import FetchRequest
from marketpipe.model.schema import assemble_bars
from marketpipe.model.secrets import Secret, scrub
from marketpipe.model.values import IngestionJobId, Series, Symbol
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.sink import Sink, StagingSink
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.plugins.validator import Validator
from marketpipe.run.dask.tasks import (
    ClusterLostError,
    RemoteFetchError,
    RemoteUnits,
    UnitStopped,
    UnitTask,
    WorkerSetup,
    WorkerSetupError,
)
from marketpipe.run.lanes import run_units
from marketpipe.run.outcome import (
    CancelToken,
    JobSummary,
    PartitionFailure,
    describe_error,
    duration_text,
    shorten,
)
from marketpipe.run.planning import WorkUnit, plan_job
from marketpipe.run.process import settle_for_units
from marketpipe.run.unit_commit import (
    UnitCommitted,
    UnitCommitter,
    UnitContext,
)
from marketpipe.storage.layout import month_key
from marketpipe.storage.location import dataset_root
from marketpipe.storage.sweep import sweep_temp_files

T = TypeVar("T")


class IngestionCoordinatorService:
    def __init__(
        self,
        *,
        job_store: SqliteJobStore,
        provider: IMarketDataProvider,
        provider_spec: ProviderSpec,
        sink: Sink,
        validators: Sequence[Validator],
        event_bus: EventBus,
        data_root: Path,
        calendar: TradingCalendar | None = None,
        cancel: CancelToken | None = None,
        replace_empty: bool = False,
        secrets: Sequence[Secret] = (),
        remote: RemoteUnits | None = None,
        setup: WorkerSetup | None = None,
        deadline_seconds: float | None = None,
    ) -> None:
        """``remote`` (with the workers' ``setup``) runs each unit's fetch and commit elsewhere
        (a Dask cluster); this coordinator records what it reports. ``deadline_seconds``
        bounds a run of a job: then no unit starts, fetches in flight are dropped (their
        partitions wait for the next run) and the job ends FAILED."""
        self._store = job_store
        self._provider = provider
        self._spec = provider_spec
        self._sink = sink
        self._bus = event_bus
        self._root = Path(data_root)
        self._calendar = calendar or nyse_calendar()
        self._abort: str | None = None
        self._abort_temporary = False
        self._deadline_seconds = deadline_seconds
        self._deadline_passed = False
        self._started_at = time.time()
        self._notes: list[str] = []
        self._cancel = cancel or CancelToken()
        self._stopped = asyncio.Event()
        self._secrets = tuple(secrets)
        self._remote = remote
        self._setup = setup
        self._committer = UnitCommitter(
            sink=sink,
            validators=validators,
            spec=provider_spec,
            calendar=self._calendar,
            dataset=dataset_root(self._root),
            replace_empty=replace_empty,
        )

    async def execute_job(self, job: IngestionJob | IngestionJobId) -> JobSummary:
        """Run every partition of the job not yet committed; the job ends COMPLETED, FAILED, or
        CANCELLED when the cancel token was set (in-flight units still commit). Given a job id,
        the job is loaded from the store; given the job (as admission made or loaded it), it is
        not loaded again."""
        started = time.perf_counter()
        if isinstance(job, IngestionJobId):
            job = self._store.get(job)
        job_id = job.job_id
        if job.state is ProcessingState.PENDING:
            job.start()
        else:
            job.resume()  # after a failure, a cancellation, a crash; refused once COMPLETED
        self._store.save(job)
        self._publish(job)
        cfg = job.configuration
        windows = self._calendar.windows(job.time_range, cfg.session)
        plan = await asyncio.to_thread(
            plan_job, self._store, self._sink.catalog, self._series(job), job, windows, self._spec
        )
        units = plan.units
        job.plan(plan.total, plan.pending, len(units), plan.stored)
        settle_for_units()  # (a command's process only) what is loaded now stays
        self._publish(job)
        failures: list[PartitionFailure] = []
        self._notes = []
        self._kept: list[PartitionKey] = []
        self._counted: dict[str, int] = {}
        counts = {"bars": 0, "rejected": 0, "completed": 0}
        # Units in flight: the job's concurrency, or as many as the cluster's workers take.
        slots = max(cfg.max_concurrency, sum(self._remote.threads) if self._remote else 0)
        semaphore = asyncio.Semaphore(slots)

        escaped: list[Exception] = []

        async def run(unit: WorkUnit, lane: int | None = None) -> None:
            async with semaphore:
                if escaped:
                    return  # left PENDING for a resume
                try:
                    await self._run_unit(job, unit, failures, counts, lane=lane)
                except Exception as exc:  # the job store or the disk gave out under a unit
                    escaped.append(exc)
                    self._stopped.set()  # units in flight stop fetching; commits finish

        self._abort, self._abort_temporary, self._deadline_passed = None, False, False
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        stopped = self._stopped

        def stop() -> None:
            loop.call_soon_threadsafe(stopped.set)

        def deadline_passed() -> None:
            self._deadline_passed = True
            stopped.set()

        undo = self._cancel.on_set(stop)
        await asyncio.to_thread(
            sweep_temp_files, self._root, self._series(job), job.job_id, [w.day for w in windows]
        )
        seconds = self._deadline_seconds
        self._started_at = time.time()
        timer = loop.call_later(seconds, deadline_passed) if seconds is not None else None
        try:
            with job_deadline(time.time() + seconds if seconds is not None else None):
                # A day file's units on one worker, never more at once than its threads.
                lanes = self._remote.threads if self._remote and self._spec.day_files else None
                await run_units(units, lanes, run)
        finally:
            undo()
            if timer is not None:
                timer.cancel()
            await self._provider.aclose()
            self._take_notes(job)  # what the provider sums up as it closes (a file's totals)

        if escaped:
            # Every unit has ended (no thread still writes through the sink, which the caller
            # closes next); the job is marked FAILED if the store still takes a write.
            job.fail(f"stopped: {describe_error(escaped[0])}", partitions_failed=len(failures))
            with contextlib.suppress(sqlite3.Error, OSError):
                self._store.save(job)
            raise escaped[0]
        if self._kept:
            self._note_kept(job, self._kept)
        for what, n in sorted(self._counted.items()):
            self._note(job, f"{n:,} {what}")
        remaining = plan.pending - counts["completed"] - len(failures)
        unpublished = None
        if job.refresh and remaining == 0 and not failures and isinstance(self._sink, StagingSink):
            # A refresh's commits were staged: all of them become visible now, together.
            try:
                await asyncio.to_thread(self._sink.publish, self._series(job), job_id.value)
            except (OSError, StorageError) as exc:
                unpublished = f"the refreshed partitions are stored but not yet shown: {exc}"
                self._abort, self._abort_temporary = unpublished, isinstance(exc, TemporaryError)
        if self._cancel.is_set() and remaining > 0:
            job.cancel(partitions_remaining=remaining)
        elif self._deadline_passed and remaining > 0:
            assert seconds is not None
            job.fail(
                f"the job's deadline ({duration_text(seconds)}) passed with {remaining} of "
                f"{plan.total} partitions not fetched; the next run (or mp jobs resume) "
                "fetches them",
                partitions_failed=len(failures),
            )
        elif unpublished is not None:
            job.fail(f"{unpublished}; the same command (or mp jobs resume) shows them")
        elif failures:
            reason = (
                f"{len(failures)} of {plan.total} partitions failed; first: "
                f"{failures[0].symbol} {failures[0].day}: {failures[0].error}"
            )
            job.fail(reason, partitions_failed=len(failures))
        else:
            totals = self._store.totals(job_id)
            job.complete(
                total_bars=totals["bars"],
                rejected_rows=totals["rejected"],
                partitions_processed=counts["completed"],
            )
        self._store.save(job)  # the checkpoint first, then the events that describe it
        self._publish(job)
        return JobSummary(
            job_id=job_id,
            state=job.state,
            partitions_total=plan.total,
            partitions_completed=counts["completed"],
            partitions_skipped=plan.done,
            bars=counts["bars"],
            rejected=counts["rejected"],
            elapsed_seconds=time.perf_counter() - started,
            failures=tuple(failures),
            aborted=self._abort,
            notes=tuple(self._notes),
            partitions_stored=plan.stored,
            aborted_temporary=self._abort_temporary,
            deadline_passed=self._deadline_passed and remaining > 0,
        )

    def _series(self, job: IngestionJob) -> Series:
        cfg = job.configuration
        return self._spec.series(cfg.feed, cfg.timeframe, cfg.settings)

    async def _until_stopped(self, work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """``work`` running until it ends or the job is stopped, whichever comes first."""
        running = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        return running

    async def _fetch(self, request: FetchRequest) -> list[pa.RecordBatch] | None:
        """The provider's answer for one unit, or ``None`` when the job was stopped meanwhile.

        Retrying is the provider's business (its connector's policy, one layer); the coordinator
        never asks again, so a server that is down sees each request's attempts once."""
        fetching = await self._until_stopped(self._provider.fetch_async(request))
        if not fetching.done():
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            return None
        return fetching.result()

    async def _run_unit(
        self,
        job: IngestionJob,
        unit: WorkUnit,
        failures: list[PartitionFailure],
        counts: dict[str, int],
        announce: bool = True,
        lane: int | None = None,
    ) -> None:
        cfg = job.configuration
        if announce:
            job.begin_unit(unit.symbols, tuple(w.day for w in unit.windows))
        self._publish(job)
        if self._cancel.is_set() or self._deadline_passed:
            return  # left PENDING for a resume
        if self._abort is not None:
            self._fail(job, unit, f"not attempted: {self._abort}", failures)
            return
        request = FetchRequest(
            symbols=unit.symbols,
            windows=unit.windows,
            timeframe=cfg.timeframe,
            session=cfg.session,
            settings=cfg.settings,
        )
        if self._remote is not None and self._setup is not None:
            await self._run_remote(job, unit, failures, counts, lane)
            return
        try:
            batches = await self._fetch(request)
            if batches is None:
                return  # stopped while fetching: left PENDING for a resume
            table = await asyncio.to_thread(assemble_bars, batches, cfg.timeframe)
            del batches  # the table holds the rows in one chunk a column: not twice meanwhile
            sources = self._provider.source_versions(cfg.timeframe, [w.day for w in unit.windows])
        except Exception as exc:  # the provider's failure is the partitions' failure, recorded
            self._take_notes(job)
            await self._fetch_failed(job, unit, exc, failures, counts)
            return
        self._take_notes(job)
        try:
            commit_started = time.perf_counter()
            committed = await asyncio.to_thread(
                self._committer.commit,
                UnitContext.of(job, self._series(job)),
                unit,
                table,
                sources,
            )
            metrics.COMMIT_SECONDS.labels(cfg.provider).observe(
                time.perf_counter() - commit_started
            )
        except (OSError, StorageError) as exc:
            self._commit_failed(job, unit, exc, failures)
            return
        self._record(job, unit.symbols, committed, counts)

    async def _run_remote(
        self,
        job: IngestionJob,
        unit: WorkUnit,
        failures: list[PartitionFailure],
        counts: dict[str, int],
        lane: int | None,
    ) -> None:
        """The unit fetched and committed by a worker (``lane``'s); recorded once it reports."""
        assert self._remote is not None and self._setup is not None
        deadline = self._started_at + self._deadline_seconds if self._deadline_seconds else None
        task = UnitTask(self._setup, UnitContext.of(job, self._series(job)), unit, deadline)
        running = await self._until_stopped(self._remote.run(task, lane))
        if not running.done():  # Ctrl-C: the workers drop the job's fetches, commits finish
            await self._remote.stop(job.job_id.value)
        try:
            done = await running
        except UnitStopped:
            return  # stopped while fetching: left PENDING for a resume
        except RemoteFetchError as exc:
            metrics.add_counted(exc.counted)
            await self._fetch_failed(job, unit, exc.original, failures, counts)
            return
        except ClusterLostError as exc:
            self._abort = shorten(str(exc))  # every later unit would find it gone too
            self._abort_temporary = True
            self._fail(job, unit, str(exc), failures, temporary=True)
            return
        except (OSError, StorageError) as exc:
            self._commit_failed(job, unit, exc, failures)
            return
        except WorkerSetupError as exc:
            self._fail(job, unit, str(exc), failures)
            return
        except Exception as exc:  # the worker could not run it
            self._fail(job, unit, f"on the worker: {describe_error(exc)}", failures)
            return
        metrics.add_counted(done.counted)
        metrics.COMMIT_SECONDS.labels(job.configuration.provider).observe(done.commit_seconds)
        for note in done.notes:
            self._note(job, note)
        # The worker wrote the files; the catalog (kept here alone) learns them from the files
        # before the job store records the unit, so it is never behind a checkpoint.
        months = sorted({month_key(w.day) for w in unit.windows})
        await asyncio.to_thread(self._sink.catalog.sync, self._series(job), months)
        self._record(job, unit.symbols, done.committed, counts)

    async def _fetch_failed(
        self,
        job: IngestionJob,
        unit: WorkUnit,
        exc: BaseException,
        failures: list[PartitionFailure],
        counts: dict[str, int],
    ) -> None:
        if isinstance(exc, SymbolError) and len(unit.symbols) > 1:
            # Isolate the culprit: one bad symbol must not fail its unit's neighbours.
            for symbol in unit.symbols:
                await self._run_unit(
                    job, WorkUnit((symbol,), unit.windows), failures, counts, announce=False
                )
            return
        if isinstance(exc, UserError):
            # Wrong credentials or a refused plan will not get better: stop asking.
            self._abort = shorten(scrub(describe_error(exc), self._secrets))
        self._fail(job, unit, describe_error(exc), failures, isinstance(exc, TemporaryError))

    def _commit_failed(
        self,
        job: IngestionJob,
        unit: WorkUnit,
        exc: BaseException,
        failures: list[PartitionFailure],
    ) -> None:
        temporary = isinstance(exc, TemporaryError)
        if isinstance(exc, StoreFailedError):
            # The store did not answer through every retry: the next unit would only wait as
            # long again. Stop; the same command resumes once it is back.
            self._abort = shorten(str(exc))
            self._abort_temporary = temporary
        if isinstance(exc, StorageError):
            self._fail(job, unit, str(exc), failures, temporary)
        else:
            self._fail(job, unit, f"could not write: {describe_error(exc)}", failures)

    def _record(
        self,
        job: IngestionJob,
        symbols: Sequence[Symbol],
        committed: UnitCommitted,
        counts: dict[str, int],
    ) -> None:
        """The unit's partitions complete in the job store, then in the job and its events."""
        outcomes, rejected, kept = committed.outcomes, committed.rejected, committed.kept
        self._kept.extend(kept)
        for what, n in committed.counted.items():
            self._counted[what] = self._counted.get(what, 0) + n
        self._store.mark_completed(job.job_id, outcomes)
        counts["rejected"] += rejected
        known = {s.value: s for s in symbols}  # checked once, when the job was made
        job.mark_partitions_processed(
            (
                IngestionPartition(known.get(o.symbol) or Symbol(o.symbol), o.day, o.path, o.bars),
                o.rejected,
            )
            for o in outcomes
        )
        counts["bars"] += sum(o.bars for o in outcomes)
        counts["completed"] += len(outcomes)
        self._publish(job)

    def _publish(self, job: IngestionJob) -> None:
        """Publish what the job recorded, in order (the job is the one source of events)."""
        self._bus.publish_all(job.pull_domain_events())

    def _take_notes(self, job: IngestionJob) -> None:
        for note in self._provider.take_notes():
            self._note(job, note)

    def _note(self, job: IngestionJob, note: str) -> None:
        note = shorten(scrub(note, self._secrets))
        if note not in self._notes:
            self._notes.append(note)
            job.note(note)
            self._publish(job)

    def _fail(
        self,
        job: IngestionJob,
        unit: WorkUnit,
        error: str,
        failures: list[PartitionFailure],
        temporary: bool = False,
    ) -> None:
        error = shorten(scrub(error, self._secrets))  # provider text, stored and shown
        keys = unit.keys
        self._store.mark_failed(job.job_id, keys, error)
        for symbol, day in keys:
            failures.append(PartitionFailure(symbol, day, error, temporary))
            job.mark_partition_failed(Symbol(symbol), day, error)
        self._publish(job)

    def _note_kept(self, job: IngestionJob, held: list[PartitionKey]) -> None:
        sample = ", ".join(f"{s} {d}" for s, d in sorted(held)[:3])
        more = f" and {len(held) - 3} more" if len(held) > 3 else ""
        self._note(
            job,
            f"the provider sent no bars for {len(held)} partitions the dataset holds "
            f"({sample}{more}): their stored rows were kept (--replace-empty clears them)",
        )
