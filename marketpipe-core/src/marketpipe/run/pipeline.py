"""The composition root: wire a provider, the plugins' validators and sink, the job store and the
event bus into a running ingest. The CLI, the tests and the benchmarks all come through here."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import attrs

from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.event_log import EventLog
from marketpipe.jobs.job import IngestionConfiguration, IngestionJob, ProcessingState
from marketpipe.jobs.locks import HeldLock, JobLocks
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.jobs.upgrade import open_dataset
from marketpipe.model import clock
from marketpipe.model.calendar import SessionWindow, nyse_calendar
from marketpipe.model.errors import InvalidInputError, JobConflictError
from marketpipe.model.secrets import scrub
from marketpipe.model.values import (
    IngestionJobId,
    Session,
    Symbol,
    Timeframe,
    TimeRange,
)
from marketpipe.plugins import registry
from marketpipe.plugins.host import get_plugin_host
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.registry import PreparedProvider, prepare_provider
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.run.actions import fetch_here, keep_actions
from marketpipe.run.admission import admit, admit_resume
from marketpipe.run.commands import CreateIngestionJobCommand
from marketpipe.run.coordinator import IngestionCoordinatorService
from marketpipe.run.dask.tasks import RemoteUnits, WorkerSetup
from marketpipe.run.deadline import choose_deadline
from marketpipe.run.executors import ExecutorChoice, choose_executor
from marketpipe.run.metrics import MetricsSubscriber
from marketpipe.run.outcome import CancelToken, JobSummary
from marketpipe.storage.location import dataset_root
from marketpipe.storage.sinks import ChosenSink, choose_sink, record_sink


@attrs.frozen(kw_only=True)
class IngestRequest:
    """What to ingest. ``all_symbols`` asks the provider for every symbol it has on those days
    (``symbols`` is then ignored); ``time_range=None`` takes the days the provider's local data
    covers (``--source``)."""

    provider: str
    symbols: tuple[Symbol, ...]
    time_range: TimeRange | None
    data_dir: Path
    timeframe: Timeframe = Timeframe.M1
    session: Session = Session.REGULAR
    overrides: Mapping[str, str] = attrs.field(factory=dict)
    batch_size: int = 100_000
    max_concurrency: int = 2
    all_symbols: bool = False
    #: A partition the provider now sends no bars for replaces the stored rows (else they stay).
    replace_empty: bool = False
    #: Fetch every partition asked, also those the dataset already holds complete.
    refresh: bool = False
    #: Leave alone the partitions ``mp delete`` removed (``mp update``).
    keep_deleted: bool = False
    #: Symbols that start later than ``time_range.start`` (``mp update``).
    symbol_starts: Mapping[str, dt.date] = attrs.field(factory=dict)
    #: Symbols that end earlier than ``time_range.end`` (renamed away, ``mp update``).
    symbol_ends: Mapping[str, dt.date] = attrs.field(factory=dict)
    #: The sink asked for (``None``: the dataset's own, else the configured one, else parquet).
    sink: str | None = None
    sink_options: Mapping[str, str] = attrs.field(factory=dict)
    #: Where units run (see :mod:`marketpipe.run.executors`): ``None`` as configured, else local.
    executor: str | None = None
    scheduler: str | None = None
    #: The run's overall bound (``6h``; ``None``: as configured, see :mod:`run.deadline`).
    deadline: str | None = None
    #: Keep the corporate actions of the symbols after the bars (``mp update`` refreshes the
    #: ledger before it plans, and says ``False``).
    actions: bool = True


async def _connected(
    stack: contextlib.AsyncExitStack[bool | None],
    units: contextlib.AbstractAsyncContextManager[_U],
    cancel: CancelToken | None,
) -> _U:
    """``units`` entered on ``stack`` (its cluster reached), unless the job is stopped first
    (SIGTERM, Ctrl-C): then nothing has started, and the wait ends at once."""
    stopped = asyncio.Event()
    undo = cancel.on_set(stopped.set) if cancel is not None else (lambda: None)
    entering = asyncio.ensure_future(stack.enter_async_context(units))
    waiting = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({entering, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        undo()
        waiting.cancel()
    if not entering.done():
        entering.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await entering
        raise KeyboardInterrupt  # stopped before anything ran: nothing was written
    result: _U = entering.result()
    return result


_U = TypeVar("_U")


def _resolve(
    request: IngestRequest,
    provider: IMarketDataProvider,
    list_symbols: Callable[[Sequence[SessionWindow]], list[str]] | None = None,
) -> IngestRequest:
    """The request with its days and symbols made explicit (asking the provider where needed,
    or ``list_symbols``: the cluster's workers)."""
    time_range = request.time_range
    if time_range is None:
        days = provider.available_days()
        if not days:
            raise InvalidInputError("give the days to ingest: --start YYYY-MM-DD --end YYYY-MM-DD")
        time_range = TimeRange(min(days), max(days))
    calendar = nyse_calendar()
    calendar.sessions(time_range)  # dates outside the calendar fail here, early
    symbols = request.symbols
    if request.all_symbols:
        provider.expect(request.timeframe)
        windows = calendar.windows(time_range, request.session)
        if not windows:
            raise InvalidInputError(
                f"no trading sessions between {time_range.start} and {time_range.end}"
            )
        found = sorted(set((list_symbols or provider.list_symbols)(windows)))
        symbols = tuple(Symbol(s) for s in found)
        if not symbols:
            raise InvalidInputError(f"the provider has no symbols on {time_range}")
    elif not symbols:
        raise InvalidInputError("no symbols given: pass --symbols AAPL,MSFT or --all-symbols")
    return attrs.evolve(request, symbols=symbols, time_range=time_range, all_symbols=False)


async def run_ingest(
    request: IngestRequest, bus: EventBus | None = None, cancel: CancelToken | None = None
) -> JobSummary:
    """Create and run a job for ``request``, or resume the unfinished job that asked the same."""
    chosen = choose_sink(request.data_dir, request.sink, request.sink_options)
    executor = choose_executor(request.executor, request.scheduler)
    choose_deadline(request.deadline)  # a wrong value fails before anything starts
    async with contextlib.AsyncExitStack() as cluster:
        remote = None
        if executor.remote:
            from marketpipe.run.dask.client import DaskUnits

            remote = await _connected(cluster, DaskUnits(executor), cancel)
        return await _run_ingest(request, bus, cancel, chosen, executor, remote)


async def _run_ingest(
    request: IngestRequest,
    bus: EventBus | None,
    cancel: CancelToken | None,
    chosen: ChosenSink,
    executor: ExecutorChoice,
    remote: RemoteUnits | None,
) -> JobSummary:
    prepared = prepare_provider(request.provider, request.overrides)
    listed_notes: list[str] = []
    try:
        lister = None
        if remote is not None:
            lister = _cluster_lister(
                remote, prepared, request.timeframe, listed_notes, asyncio.get_running_loop()
            )
        request = await asyncio.to_thread(_resolve, request, prepared.provider, lister)
    except BaseException:
        prepared.provider.close()
        raise
    assert request.time_range is not None
    store = SqliteJobStore.for_data_dir(request.data_dir)
    locks = JobLocks(request.data_dir)
    held: HeldLock | None = None
    try:
        notes = await asyncio.to_thread(open_dataset, request.data_dir, store)
        configuration = IngestionConfiguration(
            provider=prepared.spec.name,
            batch_size=request.batch_size,
            max_concurrency=request.max_concurrency,
            timeframe=request.timeframe,
            session=request.session,
            feed=prepared.provider.feed,
            settings=prepared.public_settings,
        )
        work = CreateIngestionJobCommand(
            request.symbols,
            request.time_range,
            configuration,
            symbol_starts=request.symbol_starts,
            symbol_ends=request.symbol_ends,
            refresh=request.refresh,
            keep_deleted=request.keep_deleted,
        )
        admitted = admit(
            store,
            locks,
            prepared.spec,
            work,
            lambda: _claim_series(chosen, request.data_dir, prepared.spec, configuration),
        )
        held = admitted.held
        job, resumed = admitted.job, admitted.resumed
        # The coordinator starts (or resumes) the job itself, so the job's own events reach
        # the bus.
        summary = await execute(
            store,
            job,
            prepared,
            request.data_dir,
            bus or EventBus(),
            cancel,
            replace_empty=request.replace_empty,
            sink=chosen,
            executor=executor,
            remote=remote,
            deadline=request.deadline,
            actions=request.actions,
        )
        notes = [*notes, *(n for n in listed_notes if n not in summary.notes)]
        return attrs.evolve(summary, resumed=resumed, notes=(*notes, *summary.notes))
    finally:
        if held is not None:
            held.release()
        prepared.provider.close()
        store.close()


def _cluster_lister(
    remote: RemoteUnits,
    prepared: PreparedProvider,
    timeframe: Timeframe,
    notes: list[str],
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Sequence[SessionWindow]], list[str]]:
    """``--all-symbols`` listed by the cluster's workers (a day a task): for IEX, listing is
    decoding every day, which must not happen in this one process."""

    def list_symbols(windows: Sequence[SessionWindow]) -> list[str]:
        listing = remote.list_symbols(
            prepared.spec.name, prepared.public_settings, windows, timeframe
        )
        listed = asyncio.run_coroutine_threadsafe(listing, loop).result()
        notes.extend(scrub(n, prepared.secrets) for n in listed.notes)
        return listed.symbols

    return list_symbols


async def resume_ingest(
    data_dir: Path,
    job_id: IngestionJobId,
    overrides: Mapping[str, str] | None = None,
    bus: EventBus | None = None,
    cancel: CancelToken | None = None,
    sink: str | None = None,
    sink_options: Mapping[str, str] | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    deadline: str | None = None,
) -> JobSummary:
    """Resume job ``job_id``: the settings that define its series as stored with it, every
    other one (a base URL, keys) as of now (``overrides``, the environment, the config)."""
    running = choose_executor(executor, scheduler)
    choose_deadline(deadline)
    store = SqliteJobStore.for_data_dir(data_dir)
    locks = JobLocks(data_dir)
    held: HeldLock | None = None
    prepared: PreparedProvider | None = None
    try:
        job = store.get(job_id)
        if job.state is ProcessingState.COMPLETED:
            raise JobConflictError(f"job {job_id} is already COMPLETED: nothing to resume")
        notes = await asyncio.to_thread(open_dataset, data_dir, store)
        spec = registry.get(job.configuration.provider)
        settings = {**spec.defining(job.configuration.settings), **(overrides or {})}
        prepared = prepare_provider(job.configuration.provider, settings)
        held = admit_resume(store, locks, job)
        chosen = choose_sink(data_dir, sink, sink_options)
        summary = await execute(
            store,
            job,
            prepared,
            data_dir,
            bus or EventBus(),
            cancel,
            sink=chosen,
            executor=running,
            deadline=deadline,
        )
        return attrs.evolve(summary, resumed=True, notes=(*notes, *summary.notes))
    finally:
        if held is not None:
            held.release()
        if prepared is not None:
            prepared.provider.close()
        store.close()


def cancel_job(data_dir: Path, job_id: IngestionJobId) -> IngestionJob:
    """Mark a job that is not running CANCELLED (a running one is stopped with Ctrl-C/SIGTERM)."""
    store = SqliteJobStore.for_data_dir(data_dir)
    locks = JobLocks(data_dir)
    try:
        with locks.claims():
            if locks.is_running(job_id.value):
                raise JobConflictError(
                    f"job {job_id} is running in process {locks.pid(job_id.value)}: press Ctrl-C "
                    f"there, or kill -TERM {locks.pid(job_id.value)}"
                )
            job = store.get(job_id)
            if job.state.is_terminal:
                raise JobConflictError(f"job {job_id} is already {job.state.value}")
            job.cancel()
            store.save(job)
            return job
    finally:
        store.close()


async def execute(
    store: SqliteJobStore,
    job: IngestionJob,
    prepared: PreparedProvider,
    data_dir: Path,
    bus: EventBus,
    cancel: CancelToken | None = None,
    replace_empty: bool = False,
    sink: ChosenSink | None = None,
    executor: ExecutorChoice | None = None,
    remote: RemoteUnits | None = None,
    deadline: str | None = None,
    actions: bool = True,
) -> JobSummary:
    """Run ``job``; then, unless ``actions`` is false (``mp update`` refreshed the ledger
    first), keep the corporate actions of its symbols (:mod:`marketpipe.run.actions`)."""
    host = get_plugin_host()
    seconds = choose_deadline(deadline)
    chosen = sink or choose_sink(data_dir)
    built = chosen.build(data_dir)
    if chosen.new:
        record_sink(data_dir, chosen.spec.name)
    log = EventLog(data_dir, job.job_id)
    log.subscribe(bus)
    MetricsSubscriber(prepared.spec.name).subscribe(bus)
    try:
        async with contextlib.AsyncExitStack() as stack:
            provider_settings = dict(prepared.public_settings)
            if remote is None and executor is not None and executor.remote:
                from marketpipe.run.dask.client import DaskUnits

                remote = await _connected(stack, DaskUnits(executor), cancel)
            setup = WorkerSetup(
                provider=prepared.spec.name,
                provider_settings=provider_settings,
                sink=chosen.spec.name,
                sink_settings=chosen.settings.public(),
                dataset=dataset_root(data_dir),
                replace_empty=replace_empty,
                rate_windows=remote.rate_windows(prepared.spec.name) if remote else None,
                kind=job.configuration.timeframe.kind.value,
            )
            coordinator = IngestionCoordinatorService(
                job_store=store,
                provider=prepared.provider,
                provider_spec=prepared.spec,
                sink=built,
                validators=host.validators_for(job.configuration.timeframe.kind),
                event_bus=bus,
                data_root=data_dir,
                cancel=cancel,
                replace_empty=replace_empty,
                secrets=prepared.secrets,
                remote=remote,
                setup=setup,
                deadline_seconds=seconds,
            )
            summary = await coordinator.execute_job(job)
            if actions:
                cfg = job.configuration
                fetch = (
                    remote.actions_fetcher(prepared.spec.name, provider_settings)
                    if remote is not None
                    else fetch_here(prepared.provider)
                )
                notes = await keep_actions(
                    summary,
                    job,
                    store,
                    prepared,
                    fetch,
                    built,
                    prepared.spec.series(cfg.feed, cfg.timeframe, cfg.settings),
                    data_dir,
                )
                summary = attrs.evolve(summary, notes=(*summary.notes, *notes))
            return summary
    finally:
        log.close()
        built.close()


def _stores_kind(chosen: ChosenSink, timeframe: Timeframe) -> None:
    """Refuse, in one line, rows of a kind the sink does not store (ticks in Delta tables)."""
    kind = timeframe.kind
    if kind not in chosen.spec.kinds:
        held = ", ".join(sorted(k.value for k in chosen.spec.kinds))
        raise InvalidInputError(
            f"the {chosen.spec.name} sink stores {held}, not {kind.value}: choose a sink that "
            "does (mp sinks lists them; the parquet sink stores every kind)"
        )


def _claim_series(
    chosen: ChosenSink, data_dir: Path, spec: ProviderSpec, cfg: IngestionConfiguration
) -> None:
    """Refuse a kind the sink does not store, and settings that would mix other bars into a
    stored series (``series_settings``)."""
    _stores_kind(chosen, cfg.timeframe)
    shaping = spec.shaping(cfg.settings)
    if not shaping:
        return
    sink = chosen.build(data_dir)
    try:
        sink.catalog.claim(spec.series(cfg.feed, cfg.timeframe, cfg.settings), shaping)
    finally:
        sink.close()


def last_completed_session(provider: str, session: Session = Session.REGULAR) -> dt.date:
    """The last session whose bars the provider serves final, by the calendar, the provider's
    delay and the clock (``MARKETPIPE_NOW`` pins it)."""
    spec = registry.get(provider)
    return nyse_calendar().last_completed(session, clock.now(), spec.data_delay)
