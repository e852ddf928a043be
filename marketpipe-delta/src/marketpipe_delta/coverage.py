"""The coverage table: which (symbol, day) partitions each series holds, for the catalog.

A Delta table of bars cannot say that a day was fetched and had no bars, or was partial when
fetched, or how many rows the validators rejected; the catalog needs all three. So every commit
writes, after its bars, one row per covered partition into ``_marketpipe/coverage`` (a Delta
table partitioned by series and month), replacing the rows of the same partitions with the same
kind of predicate. Written after the bars, it is never ahead of them: a crash between the two
leaves those partitions unrecorded, so the job (which has not recorded them either) commits them
again on resume, and ``mp update`` fetches them again.

For the catalog (:class:`~marketpipe.storage.holdings.Holdings`), the partitions one job
committed into one month of a series are one group, named ``job=<id>``; its stamp (rows, newest
commit time) changes whenever a commit adds to it or takes from it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.errors import StorageError
from marketpipe.model.partition import PartitionKey
from marketpipe.model.values import Series, Session, Timeframe
from marketpipe.storage.footer import Entry, Footer
from marketpipe.storage.store import Listing

from marketpipe_delta.tables import Location, guarded, load, table_path

SERIES_KEYS = ("provider", "feed", "adjustment", "timeframe")
PARTITION_BY = [*SERIES_KEYS, "month"]
SCHEMA = pa.schema(
    [
        pa.field("provider", pa.string(), nullable=False),
        pa.field("feed", pa.string(), nullable=False),
        pa.field("adjustment", pa.string(), nullable=False),
        pa.field("timeframe", pa.string(), nullable=False),
        pa.field("month", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("bars", pa.int64(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),
        pa.field("rejected", pa.int64(), nullable=False),
        pa.field("session", pa.string(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("fetched_at", pa.string(), nullable=False),
        #: When the row was committed (ns since the epoch): the catalog's version stamp.
        pa.field("committed_ns", pa.int64(), nullable=False),
    ]
)
GROUP_PREFIX = "job="


def series_filter(series: Series) -> list[tuple[str, str, str]]:
    values = (series.provider, series.feed, series.adjustment, series.timeframe.value)
    return [(key, "=", value) for key, value in zip(SERIES_KEYS, values, strict=True)]


class CoverageHoldings:
    """What the coverage table says a dataset holds (the Delta sink's catalog source)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.uri = location.coverage_uri()
        self.url = location.url
        self._table: Any = None
        self._rows: dict[tuple[int, Series, str], pa.Table] = {}

    def refresh(self) -> Any:
        """The coverage table at its newest version (``None``: nothing was committed yet)."""
        if self._table is None:
            self._table = load(self.uri, self.location.options)
        else:
            guarded(self.uri, self._table.update_incremental)
        return self._table

    def series(self) -> list[Series]:
        table = self.refresh()
        if table is None:
            return []
        found = set()
        for values in guarded(self.uri, table.partitions):
            try:
                timeframe = Timeframe.parse(values["timeframe"])
            except (KeyError, ValueError):
                continue  # a partition MarketPipe did not write
            found.add(Series(values["provider"], values["feed"], values["adjustment"], timeframe))
        return sorted(found)

    def months(self, series: Series) -> list[str]:
        table = self.refresh()
        if table is None:
            return []
        found = guarded(
            self.uri, lambda: table.partitions(file_pruning_predicate=series_filter(series))
        )
        return sorted({values["month"] for values in found})

    def month_rows(self, series: Series, month: str) -> pa.Table:
        """The coverage rows of one month of ``series`` at the loaded version."""
        table = self._table
        if table is None:
            return SCHEMA.empty_table()
        key = (table.version(), series, month)
        if key not in self._rows:
            if len(self._rows) > 64:
                self._rows.clear()
            rows = guarded(
                self.uri,
                lambda: table.to_pyarrow_table(
                    filters=[*series_filter(series), ("month", "=", month)]
                ),
            )
            self._rows[key] = rows
        return self._rows[key]

    def listing(self, series: Series, month: str) -> Listing:
        rows = self.month_rows(series, month)
        if not rows.num_rows:
            return {}
        grouped = rows.group_by("job_id").aggregate([("job_id", "count"), ("committed_ns", "max")])
        return {
            f"{GROUP_PREFIX}{job}": (int(count), int(stamp))
            for job, count, stamp in zip(
                grouped["job_id"].to_pylist(),
                grouped["job_id_count"].to_pylist(),
                grouped["committed_ns_max"].to_pylist(),
                strict=True,
            )
        }

    def footer(self, series: Series, month: str, name: str) -> Footer:
        rows = self.month_rows(series, month)
        job = name.removeprefix(GROUP_PREFIX)
        mine = rows.filter(pc.equal(rows["job_id"], job))
        try:
            sessions = set(mine["session"].to_pylist())
            session = Session.parse(sessions.pop()) if len(sessions) == 1 else Session.REGULAR
            entries = {
                (symbol, day.isoformat()): Entry(int(bars), bool(complete), int(rejected))
                for symbol, day, bars, complete, rejected in zip(
                    mine["symbol"].to_pylist(),
                    mine["day"].to_pylist(),
                    mine["bars"].to_pylist(),
                    mine["complete"].to_pylist(),
                    mine["rejected"].to_pylist(),
                    strict=True,
                )
            }
            fetched = max(mine["fetched_at"].to_pylist(), default="")
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise StorageError(f"coverage table {self.uri} cannot be read: {exc}") from None
        return Footer(entries, session, job, fetched)

    def stat(self, series: Series, month: str, name: str) -> tuple[int, int]:
        return self.listing(series, month).get(name, (0, 0))

    def lock(self, series: Series, month: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # each read is of one committed version

    def where(self, series: Series, month: str, name: str) -> str:
        return f"{table_path(series)}/month={month}"

    def prefix(self, series: Series) -> str:
        return table_path(series)


def rows_for(
    series: Series,
    entries: dict[PartitionKey, Entry],
    session: Session,
    job_id: str,
    fetched_at: str,
    committed_ns: int,
) -> pa.Table:
    """The coverage rows of one commit."""
    keys = sorted(entries)
    n = len(keys)
    return pa.table(
        {
            "provider": [series.provider] * n,
            "feed": [series.feed] * n,
            "adjustment": [series.adjustment] * n,
            "timeframe": [series.timeframe.value] * n,
            "month": [f"{d.year:04d}-{d.month:02d}" for _, d in keys],
            "symbol": [s for s, _ in keys],
            "day": [d for _, d in keys],
            "bars": [entries[k].bars for k in keys],
            "complete": [entries[k].complete for k in keys],
            "rejected": [entries[k].rejected for k in keys],
            "session": [session.value] * n,
            "job_id": [job_id] * n,
            "fetched_at": [fetched_at] * n,
            "committed_ns": [committed_ns] * n,
        },
        schema=SCHEMA,
    )
