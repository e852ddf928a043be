"""Work on the whole dataset rather than one request: ``mp status``, ``verify``, ``delete`` and
``compact`` (``mp update`` is :mod:`marketpipe.dataset.update`, ``mp resample``
:mod:`marketpipe.dataset.resample`). ``verify`` checks the catalog and the job store against
the files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import numpy as np

from marketpipe.dataset.renames import renames, successors
from marketpipe.dataset.stale import stale_symbols
from marketpipe.dataset.status import SeriesStatus, series_status
from marketpipe.dataset.unstored import jobs_by_series, unstored
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.jobs.upgrade import open_dataset
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import Kind, Series, Symbol, Timeframe
from marketpipe.plugins.sink import (
    CompactingSink,
    DeletingSink,
    FolderResult,
    Sink,
    VerifyingSink,
)
from marketpipe.storage.ledger import Ledger, latest_versions
from marketpipe.storage.location import dataset_root
from marketpipe.storage.sinks import open_catalog, open_sink, recorded_sink
from marketpipe.storage.stores import open_store
from marketpipe.storage.verify import Problem, VerifyReport


@attrs.frozen(kw_only=True)
class Selection:
    """Which stored series and symbols a command looks at (``None``/empty: all)."""

    provider: str | None = None
    feed: str | None = None
    timeframe: Timeframe | None = None
    symbols: tuple[Symbol, ...] = ()
    #: Only series of this kind (bars, trades, quotes).
    kind: Kind | None = None

    def takes(self, series: Series) -> bool:
        return (
            (self.provider is None or series.provider == self.provider.strip().lower())
            and (self.feed is None or series.feed == self.feed)
            and (self.timeframe is None or series.timeframe is self.timeframe)
            and (self.kind is None or series.kind is self.kind)
        )


def dataset_ledger(data_dir: Path) -> Ledger:
    """The corporate-actions ledger kept in the dataset under ``data_dir``."""
    return Ledger(open_store(dataset_root(data_dir)))


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
        ledger = dataset_ledger(data_dir)
        versions = ledger.versions()
        followed = successors(renames(latest_versions(versions)))
        current = {old: new for old, (new, _) in followed.items()}
        ended = {old: day for old, (_, day) in followed.items()}
        statuses = []
        stored = catalog.sync_all()
        by_series = jobs_by_series(store)
        for series in [*stored, *(s for s in by_series if s not in stored)]:
            if not selection.takes(series):
                continue
            stale = {
                s.symbol: f"{'; '.join(s.reasons)} ({s.days} days)"
                for s in stale_symbols(catalog, ledger, series, versions=versions)
            }
            status = series_status(catalog, series, calendar, symbols, current, stale, ended)
            missed = unstored(store, catalog, series, by_series.get(series, []))
            if symbols:
                missed = tuple(u for u in missed if u.symbol in symbols)
            statuses.append(attrs.evolve(status, unstored=missed))
        statuses = [s for s in statuses if s.symbols or s.unstored]
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
        if store.read_only:
            notes.append(
                "the dataset is read-only here: checked as it is, nothing was updated "
                "(the catalog was read from the files into memory)"
            )
        else:
            store.mark_missing(report.lost)  # reported once; the job store stops counting them
        ledger = dataset_ledger(data_dir)
        versions = ledger.versions()  # read once, for every series
        stale = [
            Problem(
                "stale-adjusted",
                str(series),
                f"{s.line(series)}: the ledger knows actions these bars were fetched without; "
                "mp update restates them",
            )
            for series in (sink.catalog.series() if versions.num_rows else [])
            for s in stale_symbols(sink.catalog, ledger, series, versions=versions)
        ]
        if stale:
            report = attrs.evolve(report, problems=(*report.problems, *stale))
        return report, [*notes, *report.notes]
    finally:
        sink.close()
        store.close()
