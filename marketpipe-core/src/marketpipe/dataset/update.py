"""``mp update``: bring every stored series up to the last completed session.

The catalog says which series and symbols the dataset holds; each series is brought up to the
last completed session from each symbol's first stored day, in one job fetching exactly the
partitions that are missing or were partial (never those ``mp delete`` removed). A symbol the
ledger says was renamed goes on under its new name; a provider-adjusted series whose stored
bars a later corporate action overtook is re-fetched whole (restated). The whole update ends
by its deadline (:mod:`marketpipe.run.deadline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

from marketpipe.dataset.actions import refresh_ledger
from marketpipe.dataset.operations import Selection, dataset_ledger
from marketpipe.dataset.read import stored_rows
from marketpipe.dataset.renames import follow_renames, renames, successors
from marketpipe.dataset.republished import changed_days, symbols_changed
from marketpipe.dataset.stale import find_stale
from marketpipe.dataset.unstored import jobs_by_series
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.job import IngestionJob, ProcessingState
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.jobs.upgrade import open_dataset
from marketpipe.model.errors import (
    InvalidInputError,
    JobRunningError,
    MarketPipeError,
    UserError,
)
from marketpipe.model.secrets import scrub
from marketpipe.model.values import RAW, Series, Session, Symbol, TimeRange
from marketpipe.plugins import registry
from marketpipe.plugins.registry import prepare_provider
from marketpipe.run.actions import summarize_actions
from marketpipe.run.deadline import choose_deadline
from marketpipe.run.outcome import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_TEMPFAIL,
    EXIT_USER,
    CancelToken,
    JobSummary,
    exit_code,
)
from marketpipe.run.pipeline import (
    IngestRequest,
    last_completed_session,
    run_ingest,
)
from marketpipe.storage.layout import is_derived, month_key
from marketpipe.storage.sinks import choose_sink, open_catalog


@attrs.frozen(kw_only=True)
class UpdateRequest:
    """Which stored series to bring up to date (an empty selection: all)."""

    data_dir: Path
    selection: Selection = attrs.field(factory=Selection)
    overrides: Mapping[str, str] = attrs.field(factory=dict)
    batch_size: int = 100_000
    max_concurrency: int = 2
    sink: str | None = None
    sink_options: Mapping[str, str] = attrs.field(factory=dict)
    #: Where units run (see :mod:`marketpipe.run.executors`).
    executor: str | None = None
    scheduler: str | None = None
    #: The whole update's bound, every series' jobs included (see :mod:`run.deadline`).
    deadline: str | None = None


@attrs.frozen
class SeriesUpdate:
    """One series' update: the job that ran (``None`` when nothing could be due yet) or the
    error that stopped it before it started."""

    series: Series
    symbols: int
    through: dt.date | None
    summary: JobSummary | None = None
    error: str | None = None
    #: The job that re-fetched the symbols the ledger had overtaken (a provider-adjusted
    #: series after a split, say), and one line a symbol saying why.
    restatement: JobSummary | None = None
    restated: tuple[str, ...] = ()
    #: The jobs that fetched again the days whose source was republished, and a line a day.
    refetches: tuple[JobSummary, ...] = ()
    republished: tuple[str, ...] = ()
    #: The update's deadline passed before this series' turn: the next run fetches it.
    deadline_passed: bool = False
    #: ``error`` is for later, not for a person (another process is running an overlapping
    #: job): exit 75.
    temporary: bool = False

    @property
    def summaries(self) -> tuple[JobSummary, ...]:
        return tuple(s for s in (self.summary, self.restatement, *self.refetches) if s is not None)


@attrs.frozen
class UpdateResult:
    series: tuple[SeriesUpdate, ...]
    notes: tuple[str, ...] = ()
    #: Stopped (SIGTERM, Ctrl-C) before every series had its turn.
    stopped: bool = False

    @property
    def exit_code(self) -> int:
        """0 all current; 1 partitions failed; 2 a person must fix something; 75 the provider
        unreachable or rate-limited past the deadline; 130 stopped."""
        codes = [exit_code(u.summaries) for u in self.series if u.summaries]
        codes += [EXIT_STOPPED] if self.stopped else []
        codes += [EXIT_TEMPFAIL if u.temporary else EXIT_USER for u in self.series if u.error]
        codes += [EXIT_TEMPFAIL for u in self.series if u.deadline_passed]
        for code in (EXIT_STOPPED, EXIT_USER, EXIT_FAILED, EXIT_TEMPFAIL):
            if code in codes:
                return code
        return EXIT_OK


def _job_request(
    series: Series,
    job: IngestionJob | None,
    request: UpdateRequest,
    firsts: Mapping[str, dt.date],
    last: dt.date,
    until: float,
    **extra: object,
) -> IngestRequest:
    """The job that fetches ``firsts`` (each symbol from its own first day) through ``last``
    in ``series``, with the series' settings carried over and the time left to ``until``."""
    first = min(firsts.values())
    return IngestRequest(
        provider=series.provider,
        symbols=tuple(Symbol(s) for s in sorted(firsts)),
        time_range=TimeRange(first, last),
        data_dir=request.data_dir,
        timeframe=series.timeframe,
        session=job.configuration.session if job is not None else Session.REGULAR,
        overrides=_overrides(series, job, request),
        batch_size=request.batch_size,
        max_concurrency=request.max_concurrency,
        symbol_starts={s: d for s, d in firsts.items() if d > first},
        keep_deleted=True,
        sink=request.sink,
        sink_options=request.sink_options,
        executor=request.executor,
        scheduler=request.scheduler,
        deadline=f"{max(1.0, until - time.monotonic()):.0f}s",
        **extra,  # type: ignore[arg-type]
    )


def _overrides(series: Series, job: IngestionJob | None, request: UpdateRequest) -> dict[str, str]:
    spec = registry.get(series.provider)
    overrides = spec.defining(job.configuration.settings) if job is not None else {}
    names = {s.name for s in spec.settings}
    if "feed" in names:
        overrides["feed"] = series.feed
    if "adjustment" in spec.series_settings:
        overrides["adjustment"] = series.adjustment
    overrides.update(request.overrides)
    return overrides


async def run_update(
    request: UpdateRequest, bus: EventBus | None = None, cancel: CancelToken | None = None
) -> UpdateResult:
    """Bring every selected stored series up to the last completed session."""
    bus = bus or EventBus()
    cancel = cancel or CancelToken()
    until = time.monotonic() + choose_deadline(request.deadline)
    # A wrong sink fails first; its catalog says what each series holds.
    sink = choose_sink(request.data_dir, request.sink, request.sink_options).build(request.data_dir)
    catalog = sink.catalog
    store = SqliteJobStore.for_data_dir(request.data_dir)
    try:
        notes = await asyncio.to_thread(open_dataset, request.data_dir, store)
        stored = await asyncio.to_thread(catalog.sync_all)
        by_series = jobs_by_series(store)
        # A series whose every partition failed (the provider down for the first ingest) has
        # no bars yet: what its jobs asked for is part of the plan all the same.
        every = [*stored, *(s for s in by_series if s not in stored)]
        plan: list[tuple[Series, dict[str, dt.date], IngestionJob | None]] = []
        wanted = {s.value for s in request.selection.symbols}
        for series in every:
            if not request.selection.takes(series) or is_derived(series.feed):
                continue  # derived series are kept current by mp resample, not a provider
            jobs = by_series.get(series, [])
            ids = [j.job_id.value for j in jobs]
            # From each symbol's first day stored, or asked and never stored (a failed job);
            # the job store remembers symbols whose files all went missing (mp verify found
            # them), so those come back too.
            firsts = store.first_days(ids)
            for symbol, day, _, _ in store.unstored(ids):
                firsts[symbol] = min(day, firsts.get(symbol, day))
            for symbol, (first, _) in catalog.spans(series).items():
                firsts[symbol] = min(first, firsts.get(symbol, first))
            starts = {s: d for s, d in firsts.items() if not wanted or s in wanted}
            if starts:
                plan.append((series, starts, jobs[0] if jobs else None))
    finally:
        sink.close()
        store.close()
    if not plan:
        chosen = request.selection.provider or request.selection.feed
        what = "the selected series" if chosen else "any series"
        raise InvalidInputError(
            f"the dataset in {request.data_dir} holds no bars of {what}"
            + (f" for {', '.join(sorted(wanted))}" if wanted else "")
            + ": ingest them first (mp ingest), then update"
        )
    # The ledger first: a rename or a split the provider knows now shapes what is fetched
    # (never an old name's empty days after its rename), and the jobs need not ask again.
    refreshed: set[tuple[str, str]] = set()
    notes += await _abandonable(lambda: _refresh(request, plan, refreshed), cancel, until)
    renamed = successors(renames(await asyncio.to_thread(dataset_ledger(request.data_dir).actions)))
    results: list[SeriesUpdate] = []
    for series, starts, job in plan:
        if cancel.is_set():
            break
        if time.monotonic() >= until:
            results.append(SeriesUpdate(series, len(starts), None, deadline_passed=True))
            continue
        session = job.configuration.session if job is not None else Session.REGULAR
        try:
            end = last_completed_session(series.provider, session)
            starts, ends, moved = follow_renames(starts, end, renamed)
            notes += [n for n in moved if n not in notes]
            # The company's new names: their actions too (a split after the rename).
            later = {s: d for s, d in starts.items() if (series.provider, s) not in refreshed}
            if later:
                work = functools.partial(_refresh, request, [(series, later, job)], refreshed)
                notes += await _abandonable(work, cancel, until)
            first = min(starts.values(), default=end + dt.timedelta(days=1))
            if first > end:  # nothing new to fetch; the ledger may still have moved on
                done = SeriesUpdate(series, len(starts), end)
                done = await _restate(done, starts, job, request, until, bus, cancel)
                results.append(await _refetch_republished(done, job, request, until, bus, cancel))
                continue
            summary = await run_ingest(
                _job_request(
                    series, job, request, starts, end, until, symbol_ends=ends, actions=False
                ),
                bus,
                cancel,
            )
            done = SeriesUpdate(series, len(starts), end, summary)
            if not (
                summary.aborted
                or summary.deadline_passed
                or summary.state is ProcessingState.CANCELLED
            ):
                done = await _restate(done, starts, job, request, until, bus, cancel)
                done = await _refetch_republished(done, job, request, until, bus, cancel)
        except UserError as exc:
            results.append(SeriesUpdate(series, len(starts), None, error=str(exc)))
            continue
        except JobRunningError as exc:  # another night's update still running: try later
            results.append(SeriesUpdate(series, len(starts), None, error=str(exc), temporary=True))
            continue
        results.append(done)
    return UpdateResult(tuple(results), tuple(notes), stopped=cancel.is_set())


async def _abandonable(
    work: Callable[[], list[str]], cancel: CancelToken, until: float
) -> list[str]:
    """``work()`` on a daemon thread, given up when the update is stopped (SIGTERM, Ctrl-C)
    or its deadline passes: a provider holding a request for minutes never holds the
    process. An abandoned ledger write leaves at most a temporary file (its commit is
    atomic), swept by the next run."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[str]] = loop.create_future()

    def settle(result: list[str] | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result or [])

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:  # handed to the waiting coroutine
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="marketpipe-ledger-refresh", daemon=True).start()
    stopped = asyncio.Event()
    undo = cancel.on_set(stopped.set)
    waiting = asyncio.ensure_future(stopped.wait())
    try:
        pending: set[asyncio.Future[Any]] = {done, waiting}
        await asyncio.wait(
            pending,
            timeout=max(0.0, until - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        undo()
        waiting.cancel()
    if done.done():
        return done.result()
    done.cancel()
    return ["corporate actions were not refreshed: the update was stopped first"]


def _refresh(
    request: UpdateRequest,
    plan: list[tuple[Series, dict[str, dt.date], IngestionJob | None]],
    refreshed: set[tuple[str, str]],
) -> list[str]:
    """Ask each provider of ``plan`` for the actions of its symbols (from each series' first
    day to today) and keep them in the ledger; returns notes (a provider out of reach is a
    note: the bars are fetched either way). ``refreshed`` gathers ``(provider, symbol)``."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, dt.date]] = {}
    for series, starts, job in plan:
        key = (series.provider, tuple(sorted(_overrides(series, job, request).items())))
        group = groups.setdefault(key, {})
        for symbol, day in starts.items():
            group[symbol] = min(day, group.get(symbol, day))
    notes: list[str] = []
    for (provider, overrides), group in groups.items():
        starts = {s: d for s, d in group.items() if (provider, s) not in refreshed}
        if not starts:
            continue
        try:
            prepared = prepare_provider(provider, dict(overrides))
        except UserError:
            continue  # the series' own job says why, once
        try:
            added = refresh_ledger(request.data_dir, prepared, sorted(starts), min(starts.values()))
            if added is not None:
                notes += summarize_actions(added.new, added.changed, added.rejected)
        except (MarketPipeError, OSError) as exc:
            notes.append(
                scrub(f"corporate actions of {provider} were not fetched: {exc}", prepared.secrets)
            )
        finally:
            prepared.provider.close()
        refreshed.update((provider, s) for s in starts)
    return notes


async def _restate(
    done: SeriesUpdate,
    starts: Mapping[str, dt.date],
    job: IngestionJob | None,
    request: UpdateRequest,
    until: float,
    bus: EventBus,
    cancel: CancelToken,
) -> SeriesUpdate:
    """Re-fetch, whole, each symbol of a provider-adjusted series whose stored bars the ledger
    has overtaken (:mod:`marketpipe.dataset.stale`); each month is replaced in one commit."""
    series = done.series
    if series.adjustment == RAW:
        return done
    stale = await asyncio.to_thread(find_stale, request.data_dir, series, set(starts))
    if not stale:
        return done
    catalog = open_catalog(request.data_dir)
    try:
        spans = catalog.spans(series)
    finally:
        catalog.close()
    firsts = {s.symbol: spans[s.symbol][0] for s in stale if s.symbol in spans}
    if not firsts:
        return done
    last = max(spans[s][1] for s in firsts)
    summary = await run_ingest(
        _job_request(series, job, request, firsts, last, until, refresh=True, actions=False),
        bus,
        cancel,
    )
    verb = "restated" if summary.state is ProcessingState.COMPLETED else "NOT restated"
    lines = tuple(
        s.line(series).replace(" series: ", f" series {verb}: ", 1)
        for s in stale
        if s.symbol in firsts
    )
    return attrs.evolve(done, restatement=summary, restated=lines)


def _day_rows(
    request: UpdateRequest, series: Series, day: dt.date, symbols: list[str] | None = None
) -> tuple[list[str], pa.Table]:
    """The symbols stored on ``day`` (or those given) and their rows, read through a sink
    opened for this alone (closed before a job writes)."""
    sink = choose_sink(request.data_dir, request.sink, request.sink_options).build(request.data_dir)
    try:
        sink.catalog.sync(series, [month_key(day)])
        if symbols is None:
            symbols = sink.catalog.symbols_on(series, day)
        return symbols, stored_rows(sink, series, set(symbols), [(day, day)])
    finally:
        sink.close()


def _recorded_versions(request: UpdateRequest, series: Series) -> dict[dt.date, set[str]]:
    catalog = open_catalog(request.data_dir)
    try:
        return catalog.source_versions(series)
    finally:
        catalog.close()


async def _refetch_republished(
    done: SeriesUpdate,
    job: IngestionJob | None,
    request: UpdateRequest,
    until: float,
    bus: EventBus,
    cancel: CancelToken,
) -> SeriesUpdate:
    """Fetch again, whole, each stored day whose source the provider has republished since
    (:mod:`marketpipe.dataset.republished`), and say what changed. A day at a time: its rows
    read before and after its job, never a sink held open while a job writes."""
    series = done.series
    recorded = await asyncio.to_thread(_recorded_versions, request, series)
    if not recorded:
        return done
    prepared = prepare_provider(series.provider, _overrides(series, job, request))
    try:
        current = await asyncio.to_thread(
            functools.partial(
                prepared.provider.source_versions, series.timeframe, sorted(recorded), fresh=True
            )
        )
    finally:
        prepared.provider.close()
    if current is None:
        return done
    days, withdrawn = changed_days(recorded, current)
    lines = [
        f"{series}: {day}: the source is no longer listed; its stored bars are kept"
        for day in withdrawn
    ]
    refetches = []
    for day in days:
        if cancel.is_set() or time.monotonic() >= until:
            lines.append(f"{series}: {day}: source republished, NOT re-fetched (stopped)")
            continue
        symbols, before = await asyncio.to_thread(_day_rows, request, series, day)
        summary = await run_ingest(
            _job_request(
                series, job, request, dict.fromkeys(symbols, day), day, until,
                refresh=True, actions=False, replace_empty=True,
            ),
            bus,
            cancel,
        )  # fmt: skip
        refetches.append(summary)
        if summary.state is not ProcessingState.COMPLETED:
            lines.append(f"{series}: {day}: source republished, NOT re-fetched (job "
                         f"{summary.job_id})")  # fmt: skip
            continue
        _, after = await asyncio.to_thread(_day_rows, request, series, day, symbols)
        changed = symbols_changed(before, after)
        shown = f" ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''})"
        lines.append(
            f"{series}: {day}: source republished: re-fetched, {len(changed)} symbol(s) "
            f"changed{shown if changed else ''}"
        )
    return attrs.evolve(done, refetches=tuple(refetches), republished=tuple(lines))
