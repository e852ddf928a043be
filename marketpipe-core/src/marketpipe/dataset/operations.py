"""Work on the whole dataset rather than one request: ``mp update``, ``status``, ``verify``,
``delete`` and ``compact`` (``mp resample`` is :mod:`marketpipe.dataset.resample`).

``update`` asks the catalog which series and symbols the dataset holds and brings each up to the
last completed session, from each symbol's first stored day: one job per series, each fetching
exactly the partitions that are missing or were partial. ``verify`` checks the catalog and the
job store against the files.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import numpy as np

from marketpipe.dataset.renames import renames, successors
from marketpipe.dataset.stale import find_stale, stale_symbols
from marketpipe.dataset.status import SeriesStatus, series_status
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.job import IngestionJob, ProcessingState
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.errors import InvalidInputError, UserError
from marketpipe.model.values import RAW, Series, Session, Symbol, Timeframe, TimeRange
from marketpipe.plugins import registry
from marketpipe.plugins.sink import (
    CompactingSink,
    DeletingSink,
    FolderResult,
    Sink,
    VerifyingSink,
)
from marketpipe.run.coordinator import CancelToken, JobSummary
from marketpipe.run.pipeline import (
    IngestRequest,
    last_completed_session,
    open_dataset,
    run_ingest,
)
from marketpipe.storage.layout import DERIVED_SUFFIX
from marketpipe.storage.ledger import Ledger, latest_versions
from marketpipe.storage.location import dataset_root
from marketpipe.storage.sinks import choose_sink, open_catalog, open_sink, recorded_sink
from marketpipe.storage.stores import open_store
from marketpipe.storage.verify import Problem, VerifyReport


@attrs.frozen(kw_only=True)
class Selection:
    """Which stored series and symbols a command looks at (``None``/empty: all)."""

    provider: str | None = None
    feed: str | None = None
    timeframe: Timeframe | None = None
    symbols: tuple[Symbol, ...] = ()

    def takes(self, series: Series) -> bool:
        return (
            (self.provider is None or series.provider == self.provider.strip().lower())
            and (self.feed is None or series.feed == self.feed)
            and (self.timeframe is None or series.timeframe is self.timeframe)
        )


@attrs.frozen(kw_only=True)
class UpdateRequest:
    """Which stored series to bring up to date (an empty selection: all)."""

    data_dir: Path
    selection: Selection = Selection()
    overrides: Mapping[str, str] = attrs.field(factory=dict)
    batch_size: int = 100_000
    max_concurrency: int = 2
    sink: str | None = None
    sink_options: Mapping[str, str] = attrs.field(factory=dict)
    #: Where units run (see :mod:`marketpipe.run.executors`).
    executor: str | None = None
    scheduler: str | None = None


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

    @property
    def summaries(self) -> tuple[JobSummary, ...]:
        return tuple(s for s in (self.summary, self.restatement) if s is not None)


@attrs.frozen
class UpdateResult:
    series: tuple[SeriesUpdate, ...]
    notes: tuple[str, ...] = ()


def _series_jobs(store: SqliteJobStore, series: Series) -> list[IngestionJob]:
    """The jobs that wrote ``series``, newest first: the newest one's settings (a base URL, a
    source) are reused."""
    found = []
    for job in store.list_jobs():
        cfg = job.configuration
        if (cfg.provider, cfg.feed, cfg.timeframe) != (
            series.provider,
            series.feed,
            series.timeframe,
        ):
            continue
        try:
            spec = registry.get(cfg.provider)
            if spec.series(cfg.feed, cfg.timeframe, cfg.settings) == series:
                found.append(job)
        except UserError:
            break
    return found


#: Settings that define where a series' bars come from, besides the spec's series settings:
#: carried over from the job that fetched it. Every other setting (a base URL, a rate limit,
#: keys) is resolved as of now: ``-o``, then the environment, the config file, the defaults.
_CARRIED = frozenset({"feed", "source"})


def _overrides(series: Series, job: IngestionJob | None, request: UpdateRequest) -> dict[str, str]:
    spec = registry.get(series.provider)
    carried = _CARRIED | set(spec.series_settings)
    before = job.configuration.settings if job is not None else {}
    overrides = {k: v for k, v in before.items() if k in carried}
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
    # A wrong sink fails first; its catalog says what each series holds.
    sink = choose_sink(request.data_dir, request.sink, request.sink_options).build(request.data_dir)
    catalog = sink.catalog
    store = SqliteJobStore.for_data_dir(request.data_dir)
    try:
        notes = await asyncio.to_thread(open_dataset, request.data_dir, store)
        every = await asyncio.to_thread(catalog.sync_all)
        renamed = successors(renames(await asyncio.to_thread(_ledger(request.data_dir).actions)))
        plan: list[tuple[Series, dict[str, dt.date], IngestionJob | None]] = []
        wanted = {s.value for s in request.selection.symbols}
        for series in every:
            if not request.selection.takes(series) or series.feed.endswith(DERIVED_SUFFIX):
                continue  # derived series are kept current by mp resample, not a provider
            jobs = _series_jobs(store, series)
            # From each symbol's first stored day; the job store remembers symbols whose files
            # all went missing (mp verify found them), so those come back too.
            firsts = store.first_days(j.job_id.value for j in jobs)
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
    results: list[SeriesUpdate] = []
    for series, starts, job in plan:
        if cancel.is_set():
            break
        session = job.configuration.session if job is not None else Session.REGULAR
        try:
            end = last_completed_session(series.provider, session)
            starts, ends, moved = _follow_renames(starts, end, renamed)
            notes += [n for n in moved if n not in notes]
            first = min(starts.values(), default=end + dt.timedelta(days=1))
            if first > end:  # nothing new to fetch; the ledger may still have moved on
                results.append(
                    await _restate(
                        SeriesUpdate(series, len(starts), end), starts, job, request, bus, cancel
                    )
                )
                continue
            summary = await run_ingest(
                IngestRequest(
                    provider=series.provider,
                    symbols=tuple(Symbol(s) for s in sorted(starts)),
                    time_range=TimeRange(first, end),
                    data_dir=request.data_dir,
                    timeframe=series.timeframe,
                    session=session,
                    overrides=_overrides(series, job, request),
                    batch_size=request.batch_size,
                    max_concurrency=request.max_concurrency,
                    symbol_starts={s: d for s, d in starts.items() if d > first},
                    symbol_ends=ends,
                    keep_deleted=True,
                    sink=request.sink,
                    sink_options=request.sink_options,
                    executor=request.executor,
                    scheduler=request.scheduler,
                ),
                bus,
                cancel,
            )
            done = SeriesUpdate(series, len(starts), end, summary)
            if summary.aborted is None and summary.state is not ProcessingState.CANCELLED:
                done = await _restate(done, starts, job, request, bus, cancel)
        except UserError as exc:
            results.append(SeriesUpdate(series, len(starts), None, error=str(exc)))
            continue
        results.append(done)
    return UpdateResult(tuple(results), tuple(notes))


def _ledger(data_dir: Path) -> Ledger:
    return Ledger(open_store(dataset_root(data_dir)))


def _follow_renames(
    starts: Mapping[str, dt.date],
    end: dt.date,
    renamed: Mapping[str, tuple[str, dt.date]],
) -> tuple[dict[str, dt.date], dict[str, dt.date], list[str]]:
    """``(starts, ends, notes)``: a stored symbol the ledger says was renamed is fetched up to
    the day before the rename, and its company goes on under the new name from that day."""
    out, ends, notes = dict(starts), {}, []
    for old, first in starts.items():
        if old not in renamed or renamed[old][1] > end:
            continue
        new, day = renamed[old]
        last = day - dt.timedelta(days=1)
        if first > last:
            del out[old]
        else:
            ends[old] = last
        if new not in out:
            out[new] = day
            notes.append(f"{old} was renamed {new} on {day}: its series goes on under {new}")
    return out, ends, notes


async def _restate(
    done: SeriesUpdate,
    starts: Mapping[str, dt.date],
    job: IngestionJob | None,
    request: UpdateRequest,
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
    first, last = min(firsts.values()), max(spans[s][1] for s in firsts)
    summary = await run_ingest(
        IngestRequest(
            provider=series.provider,
            symbols=tuple(Symbol(s) for s in sorted(firsts)),
            time_range=TimeRange(first, last),
            data_dir=request.data_dir,
            timeframe=series.timeframe,
            session=job.configuration.session if job is not None else Session.REGULAR,
            overrides=_overrides(series, job, request),
            batch_size=request.batch_size,
            max_concurrency=request.max_concurrency,
            refresh=True,
            keep_deleted=True,
            symbol_starts={s: d for s, d in firsts.items() if d > first},
            sink=request.sink,
            sink_options=request.sink_options,
            executor=request.executor,
            scheduler=request.scheduler,
        ),
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


def run_status(
    data_dir: Path, selection: Selection, plot_to: Path | None = None
) -> tuple[list[SeriesStatus], list[str]]:
    """Each selected series' status, from the catalog synced with the files; with ``plot_to``,
    the coverage picture too."""
    if not data_dir.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir} (run mp ingest first, or --data-dir)")
    store = SqliteJobStore.for_data_dir(data_dir)
    catalog = open_catalog(data_dir)
    try:
        notes = open_dataset(data_dir, store)
        calendar = nyse_calendar()
        symbols = [s.value for s in selection.symbols]
        ledger = _ledger(data_dir)
        versions = ledger.versions()
        current = {
            old: new for old, (new, _) in successors(renames(latest_versions(versions))).items()
        }
        statuses = []
        for series in catalog.sync_all():
            if not selection.takes(series):
                continue
            stale = {
                s.symbol: f"{'; '.join(s.reasons)} ({s.days} days)"
                for s in stale_symbols(catalog, ledger, series, versions=versions)
            }
            statuses.append(series_status(catalog, series, calendar, symbols, current, stale))
        statuses = [s for s in statuses if s.symbols]
        for status in statuses:
            damaged = [f for f in catalog.files(status.series) if f.error]
            if damaged:
                notes.append(
                    f"{len(damaged)} file(s) of {status.series} cannot be read and are not "
                    f"counted (first: month={damaged[0].month}/{damaged[0].name}); see mp verify"
                )
        if plot_to is not None:
            from marketpipe.dataset.plot import coverage_matrix, draw

            if not statuses:
                raise InvalidInputError("nothing stored for that selection: no picture to draw")
            draw(
                [
                    (s.series, *coverage_matrix(catalog, s.series, calendar, set(symbols)))
                    for s in statuses
                ],
                plot_to,
            )
        return statuses, notes
    finally:
        catalog.close()
        store.close()


@attrs.frozen
class SeriesDeletion:
    series: Series
    partitions: tuple[tuple[str, dt.date, int], ...]  # (symbol, day, bars)

    @property
    def bars(self) -> int:
        return sum(n for _, _, n in self.partitions)


def plan_delete(
    data_dir: Path, selection: Selection, first: dt.date | None, last: dt.date | None
) -> list[SeriesDeletion]:
    """What ``mp delete`` would remove: the selected stored partitions, per series."""
    if not data_dir.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    store = SqliteJobStore.for_data_dir(data_dir)
    catalog = open_catalog(data_dir)
    try:
        open_dataset(data_dir, store)
        wanted = {s.value for s in selection.symbols}
        plan = []
        for series in catalog.sync_all():
            if not selection.takes(series):
                continue
            names, cols = catalog.partitions(series)
            keep = np.isin(np.array(names, dtype=object)[cols["symbol"]], list(wanted))
            if first is not None:
                keep &= cols["day"] >= first.toordinal()
            if last is not None:
                keep &= cols["day"] <= last.toordinal()
            chosen = tuple(
                (names[s], dt.date.fromordinal(d), b)
                for s, d, b in zip(
                    cols["symbol"][keep].tolist(),
                    cols["day"][keep].tolist(),
                    cols["bars"][keep].tolist(),
                    strict=True,
                )
            )
            if chosen:
                plan.append(SeriesDeletion(series, chosen))
        return plan
    finally:
        catalog.close()
        store.close()


def _capable(sink: Sink, kind: type, what: str, data_dir: Path) -> None:
    if not isinstance(sink, kind):
        sink.close()
        name = recorded_sink(data_dir) or type(sink).__name__
        raise InvalidInputError(f"the dataset's sink ({name}) cannot {what}")


def run_delete(
    data_dir: Path,
    plan: list[SeriesDeletion],
    sink_name: str | None = None,
    sink_options: Mapping[str, str] | None = None,
) -> int:
    """Remove the planned partitions (rows and catalog entries); returns the rows removed. The
    job store records the deletion first (and marks the jobs' records DELETED), so ``mp
    verify``, ``mp update`` and its restatements leave them be, until an explicit ``mp ingest``
    of those days."""
    sink = open_sink(data_dir, sink_name, sink_options)
    _capable(sink, DeletingSink, "delete rows", data_dir)
    assert isinstance(sink, DeletingSink)
    store = SqliteJobStore.for_data_dir(data_dir)
    try:
        removed = 0
        for item in plan:
            keys = {(s, d) for s, d, _ in item.partitions}
            # Recorded first: killed between the two, the job store already says deleted, and
            # running the same delete again removes the rows the catalog still finds.
            store.mark_deleted(
                str(item.series), sink.catalog.holdings.prefix(item.series) + "/", keys
            )
            removed += sink.delete(item.series, keys)
        return removed
    finally:
        sink.close()
        store.close()


def run_compact(
    data_dir: Path,
    selection: Selection,
    dry_run: bool = False,
    on_folder: Callable[[int, int], None] | None = None,
    sink_name: str | None = None,
    sink_options: Mapping[str, str] | None = None,
) -> list[FolderResult]:
    """Compact every month of the selected series; ``on_folder(done, total)`` reports
    progress."""
    if not data_dir.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    sink = open_sink(data_dir, sink_name, sink_options)
    _capable(sink, CompactingSink, "compact", data_dir)
    assert isinstance(sink, CompactingSink)
    store = SqliteJobStore.for_data_dir(data_dir)
    try:
        open_dataset(data_dir, store)
        folders = [
            (series, month)
            for series in sink.catalog.sync_all()
            if selection.takes(series)
            for month in sink.months(series)
        ]
        results = []
        for done, (series, month) in enumerate(folders, start=1):
            results.append(sink.compact(series, month, dry_run=dry_run))
            if on_folder is not None:
                on_folder(done, len(folders))
        return results
    finally:
        sink.close()
        store.close()


def run_verify(data_dir: Path) -> tuple[VerifyReport, list[str]]:
    """Check the dataset under ``data_dir`` (its files may be in object storage); the catalog is
    synced with the files afterwards, so the next update fetches again what went missing."""
    if not data_dir.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    sink = open_sink(data_dir, writing=False)
    _capable(sink, VerifyingSink, "verify what it stored", data_dir)
    assert isinstance(sink, VerifyingSink)
    store = SqliteJobStore.for_data_dir(data_dir)
    try:
        notes = open_dataset(data_dir, store)
        report = sink.verify(store.completed_paths(), store.completed_at)
        store.mark_missing(report.lost)  # reported once; the job store stops counting them
        stale = [
            Problem(
                "stale-adjusted",
                str(series),
                f"{s.line(series)}: the ledger knows actions these bars were fetched without; "
                "mp update restates them",
            )
            for series in sink.catalog.series()
            for s in find_stale(data_dir, series)
        ]
        if stale:
            report = attrs.evolve(report, problems=(*report.problems, *stale))
        return report, notes
    finally:
        sink.close()
        store.close()
