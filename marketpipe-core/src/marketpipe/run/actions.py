"""After a job's bars: the corporate actions of the symbols it touched, into the dataset's ledger.

``mp ingest`` asks the provider for the actions of the symbols of a job that fetched new bars,
from the series' first stored day (or the job's start, if earlier) to today, and keeps them in
the ledger (:mod:`marketpipe.storage.ledger`): at most once per completed session a symbol (the
job store remembers when), never from a run that fetched nothing, so a re-run of done work costs
the provider nothing. ``mp update`` and ``mp actions --fetch`` always ask. A provider that
reports no actions (IEX HIST) is not asked. A failure to fetch them is a note: the bars are
committed either way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.jobs.job import IngestionJob, ProcessingState
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model import clock
from marketpipe.model.actions import CASH_DIVIDEND, NAME_CHANGE, describe
from marketpipe.model.calendar import in_sessions, nyse_calendar
from marketpipe.model.errors import MarketPipeError, StorageError
from marketpipe.model.secrets import Secret, scrub
from marketpipe.model.values import RAW, Series, Session, Timeframe, TimeRange
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.registry import PreparedProvider
from marketpipe.plugins.sink import Sink
from marketpipe.run.outcome import JobSummary
from marketpipe.storage.ledger import Ledger
from marketpipe.storage.location import dataset_root
from marketpipe.storage.stores import open_store


def summarize_actions(new: pa.Table, changed: pa.Table, rejected: pa.Table) -> list[str]:
    notes = []
    if new.num_rows or changed.num_rows:
        lines = [describe(r) for r in new.to_pylist()] + [
            f"{describe(r)} (corrected)" for r in changed.to_pylist()
        ]
        shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
        notes.append(
            f"corporate actions: {new.num_rows} new and {changed.num_rows} corrected in the "
            f"ledger: {shown} (mp actions lists them)"
        )
    unknown = [r["symbol"] for r in new.to_pylist() if r["kind"] == "unknown"]
    if unknown:
        notes.append(
            f"corporate actions: {len(unknown)} of a kind MarketPipe does not know (of "
            f"{', '.join(sorted(set(unknown))[:5])}) kept in the ledger, never applied"
        )
    if rejected.num_rows:
        notes.append(
            f"corporate actions: {rejected.num_rows} records that make no sense were set aside, "
            f"first: {rejected['reason'][0].as_py()} (mp actions --rejected)"
        )
    return notes


#: ``fetch(symbols, start, end)``: the provider's actions (``None``: it reports none), asked
#: here or, for a job on a cluster, on a worker under the cluster's shared rate limit.
FetchActions = Callable[[list[str], dt.date, dt.date], Awaitable[pa.Table | None]]


def fetch_here(provider: IMarketDataProvider) -> FetchActions:
    """:data:`FetchActions` through ``provider`` in this process (off the event loop)."""
    return lambda symbols, start, end: asyncio.to_thread(
        provider.fetch_actions, symbols, start, end
    )


#: How far before a cash dividend's ex-date the close it is checked against is looked for.
_LOOKBACK = dt.timedelta(days=10)


def _close_before(sink: Sink, series: Series, symbol: str, ex: dt.date) -> float | None:
    """The raw close of the last regular-session bar stored in the ten days before ``ex``
    (``None`` for a series of ticks: it has no close)."""
    read_range = getattr(sink, "read_range", None)
    if read_range is None or not series.timeframe.is_bar:
        return None
    bars = read_range(series, [symbol], ex - _LOOKBACK, ex - dt.timedelta(days=1))
    if bars.num_rows == 0:
        return None
    ts = np.asarray(bars["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False))
    if series.timeframe is not Timeframe.D1:
        windows = nyse_calendar().windows(
            TimeRange(ex - _LOOKBACK, ex - dt.timedelta(days=1)), Session.REGULAR
        )
        regular = in_sessions(ts, windows, series.timeframe.nanos)
        if not regular.any():
            return None
        bars, ts = bars.filter(pa.array(regular)), ts[regular]
    close = float(bars["close"][int(np.argmax(ts))].as_py())
    return close if math.isfinite(close) else None


def refuse_by_prices(
    table: pa.Table, sink: Sink, series: Series, ledger: Ledger | None = None
) -> dict[tuple[str, str], str]:
    """``(provider, id) -> reason`` of the cash dividends at or above the raw close before
    their ex-date (stored in ``series``, when it is raw): such a record would make the
    adjustment factor zero or negative. Those ``ledger`` holds already, with the same date
    and rate, were checked when they came: not read again."""
    if series.adjustment != RAW or table.num_rows == 0:
        return {}
    dividends = table.filter(pc.equal(table["kind"], CASH_DIVIDEND))
    if dividends.num_rows == 0:
        return {}
    held: set[tuple[object, ...]] = set()
    if ledger is not None:
        known = ledger.actions()
        known = known.filter(pc.equal(known["kind"], CASH_DIVIDEND))
        held = {
            (r["provider"], r["id"], r["ex_date"], r["rate"])
            for r in known.select(["provider", "id", "ex_date", "rate"]).to_pylist()
        }
    refused = {}
    for row in dividends.to_pylist():  # actions are few
        if row["ex_date"] is None or row["rate"] is None:
            continue  # the ledger's own check sets these aside
        if (row["provider"], row["id"], row["ex_date"], row["rate"]) in held:
            continue
        close = _close_before(sink, series, row["symbol"], row["ex_date"])
        if close is not None and row["rate"] >= close:
            refused[(row["provider"], row["id"])] = (
                f"a dividend of {row['rate']:g} at or above the close before its ex-date "
                f"({close:g})"
            )
    return refused


async def record_actions(
    fetch: FetchActions,
    data_dir: Path,
    sink: Sink,
    series: Series,
    symbols: Sequence[str],
    start: dt.date,
    secrets: Sequence[Secret] = (),
) -> tuple[list[str], bool]:
    """Fetch and keep the actions of ``symbols``; returns the notes to show, and whether the
    ledger now holds what the provider said."""
    spans = await asyncio.to_thread(sink.catalog.spans, series)
    firsts = [spans[s][0] for s in symbols if s in spans]
    since = min([start, *firsts])
    today = clock.now().date()
    try:
        table = await fetch(list(symbols), since, today)
    except (MarketPipeError, OSError) as exc:  # keys, plan, outage: the bars stand either way
        return [scrub(f"corporate actions were not fetched: {exc}", secrets)], False
    if table is None:
        return [], True
    try:
        ledger = Ledger(open_store(dataset_root(data_dir)))
        refused = await asyncio.to_thread(refuse_by_prices, table, sink, series, ledger)
        added = await asyncio.to_thread(ledger.add, table, refused)
    except (StorageError, OSError) as exc:
        return [f"corporate actions were not kept: {exc}"], False
    return summarize_actions(added.new, added.changed, added.rejected), True


def renamed_away(
    data_dir: Path, symbols: Sequence[str], end: dt.date, secrets: Sequence[Secret] = ()
) -> list[str]:
    """A note for each of ``symbols`` the ledger says was renamed on or before ``end``: its
    days from the rename on trade under the new name, and an ingest of the old one stores
    them empty."""
    try:
        known = Ledger(open_store(dataset_root(data_dir))).actions(symbols=symbols)
    except (StorageError, OSError):
        return []
    known = known.filter(pc.equal(known["kind"], NAME_CHANGE))
    notes = []
    for row in known.select(["symbol", "new_symbol", "ex_date", "process_date"]).to_pylist():
        day = row["ex_date"] or row["process_date"]
        if row["symbol"] in symbols and day is not None and day <= end:
            notes.append(
                f"{row['symbol']} was renamed {row['new_symbol']} on {day}: its days from then "
                f"on are {row['new_symbol']}'s (mp ingest --symbols {row['new_symbol']}; "
                f"marketpipe.read of either name follows the rename)"
            )
    return [scrub(n, secrets) for n in notes]


async def keep_actions(
    summary: JobSummary,
    job: IngestionJob,
    store: SqliteJobStore,
    prepared: PreparedProvider,
    fetch: FetchActions,
    sink: Sink,
    series: Series,
    data_dir: Path,
) -> list[str]:
    """After a job's bars: keep the corporate actions of its symbols, and say which of them
    the ledger knows were renamed away; returns the notes. The actions are asked for once the
    bars are in; not when the provider refused the job (keys, plan) or failed every partition
    (asking again would fail as well), not when the job fetched nothing new, and a symbol at
    most once a completed session (the job store remembers, :meth:`SqliteJobStore.refreshed`)."""
    notes: list[str] = []
    gave_up = (
        summary.aborted is not None
        or summary.deadline_passed
        or (summary.failures and not summary.partitions_completed)
    )
    names = [s.value for s in job.symbols]
    if (
        summary.partitions_completed
        and summary.state is not ProcessingState.CANCELLED
        and not gave_up
    ):
        name, since = prepared.spec.name, job.time_range.start
        session = nyse_calendar().last_completed(
            Session.REGULAR, clock.now(), prepared.spec.data_delay
        )
        done = await asyncio.to_thread(store.refreshed, name, names, session, since)
        symbols = [s for s in names if s not in done]
        if symbols:
            fetched, kept = await record_actions(
                fetch, data_dir, sink, series, symbols, since, prepared.secrets
            )
            notes += fetched
            if kept:
                await asyncio.to_thread(store.mark_refreshed, name, symbols, session, since)
    notes += await asyncio.to_thread(
        renamed_away, data_dir, names, job.time_range.end, prepared.secrets
    )
    return notes
