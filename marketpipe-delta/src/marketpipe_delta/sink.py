"""The Delta Lake sink: each unit is one transaction that replaces exactly its (symbol, day) rows.

A commit is a Delta overwrite with a predicate naming the unit's partitions
(:mod:`.predicate`): in one transaction the table's files holding those rows are replaced by
files without them, and the unit's rows are added; a reader sees the version before or the
version after, never a mix. Re-ingest, resume after SIGKILL and two writers at once are safe by
the table format: an uncommitted transaction leaves only unreferenced files (VACUUM removes
them), and two writers' commits are ordered by delta-rs, which retries the later one against the
earlier and refuses it only when they touched the same rows (then this sink tries again: an
overwrite by predicate gives the same table however often it is repeated).

The bars table has the canonical columns plus ``day`` (the New York session day, a date) and
``month`` (``YYYY-MM``, the partition column). After the bars, the commit records its partitions
in the coverage table (:mod:`.coverage`), which the catalog reads.

A refresh (a restatement) is staged instead: each unit is a Parquet file under
``_marketpipe/staging/<job>/<series>/``, outside the table, and :meth:`DeltaSink.publish` writes
them all in one transaction when the job has fetched everything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from marketpipe.model import clock
from marketpipe.model.calendar import day_bounds
from marketpipe.model.errors import InvalidInputError, StorageError
from marketpipe.model.partition import PartitionKey
from marketpipe.model.schema import BAR_COLUMNS, BAR_SCHEMA, conform
from marketpipe.model.values import Series
from marketpipe.plugins.sink import CommitRequest, FolderResult
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.footer import FETCHED_KEY, JOB_KEY, Entry, Footer, read_footer
from marketpipe.storage.layout import STAGING, encode_component, month_key
from marketpipe.storage.parquet_files import read_file
from marketpipe.storage.partition_index import index_covered
from marketpipe.storage.store import Store
from marketpipe.storage.stores import open_store
from marketpipe.storage.verify import VerifyReport

from marketpipe_delta import predicate
from marketpipe_delta.coverage import (
    GROUP_PREFIX,
    PARTITION_BY,
    CoverageHoldings,
    rows_for,
    series_filter,
)
from marketpipe_delta.tables import Location, guarded, load, one_line, reachable, table_path

#: How often a commit is tried again when another writer's transaction touched the same rows,
#: after a random pause of up to 0.05 s doubling to 2 s (random, so two writers that collided
#: do not collide again in step): at most about a minute in all.
CONFLICT_TRIES = 30
_EPOCH = dt.date(1970, 1, 1).toordinal()
COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "none")


class DeltaSink:
    """Bars as one Delta table per series under ``location`` (a folder or ``s3://`` URL); the
    catalog and the job store stay under the local ``root``."""

    def __init__(
        self,
        root: Path,
        location: Path | str,
        retention_hours: int = 168,
        compression: str = "zstd",
    ) -> None:
        self.root = Path(root)
        self.location = Location(location)
        self.retention_hours = retention_hours
        self.compression = compression
        self.holdings = CoverageHoldings(self.location)
        self.catalog = Catalog(self.root, self.holdings)
        self._tables: dict[str, Any] = {}

    def close(self) -> None:
        self.catalog.close()

    # writing ----------------------------------------------------------------------------------

    def _properties(self) -> Any:
        from deltalake import WriterProperties

        codec = "UNCOMPRESSED" if self.compression == "none" else self.compression.upper()
        return WriterProperties(compression=codec)  # type: ignore[arg-type]

    def _overwrite(
        self,
        uri: str,
        data: pa.Table | Callable[[], pa.RecordBatchReader],
        where: str,
        partition_by: list[str],
        metadata: Mapping[str, str],
    ) -> None:
        """Replace the rows matching ``where`` by ``data`` (a table, or a function giving a
        stream of its batches, asked again for each try) in one transaction."""
        from deltalake import CommitProperties, write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        for attempt in range(CONFLICT_TRIES):
            target = self._tables.get(uri)
            if target is None:
                target = load(uri, self.location.options)  # (which asks whether it is down)
            else:
                reachable(uri)  # a kept table is written without asking the store first
            try:
                write_deltalake(
                    target if target is not None else uri,
                    data if isinstance(data, pa.Table) else data(),
                    mode="overwrite",
                    predicate=where,
                    partition_by=partition_by,
                    storage_options=self.location.options,
                    writer_properties=self._properties(),
                    commit_properties=CommitProperties(custom_metadata=dict(metadata)),
                )
                if target is not None:
                    self._tables[uri] = target  # kept: the next write reads only newer log entries
                return
            except CommitFailedError as exc:
                # Try again from the table as it is now: a kept snapshot from before the other
                # writer's commits would conflict with every one of them again.
                self._tables.pop(uri, None)
                if attempt + 1 == CONFLICT_TRIES:
                    raise StorageError(
                        f"delta table {uri}: another writer kept changing the same rows: {exc}"
                    ) from None
                time.sleep(random.uniform(0.0, min(2.0, 0.05 * 2**attempt)))
            except (DeltaError, OSError, RuntimeError) as exc:
                raise one_line(uri, exc) from None

    def stage(self, request: CommitRequest) -> dict[PartitionKey, str]:
        """The unit's rows, with their partitions in the file's footer, as one Parquet file
        under ``_marketpipe/staging/<job>/<series>/``: not part of the series' table (no
        reader sees them) until :meth:`publish`."""
        table = conform(request.table)
        index = index_covered(table, request.coverage)
        entries = self._entries(request, index.counts())
        if not entries:
            return {}
        series = request.series
        footer = Footer(
            {(s, d.isoformat()): e for (s, d), e in entries.items()},
            request.session,
            request.job_id,
            clock.now().isoformat(timespec="seconds"),
        )
        rows = with_partition_columns(table, index.days, index.day)
        meta = {JOB_KEY: footer.job_id.encode(), FETCHED_KEY: footer.fetched_at.encode()}
        meta.update(footer.metadata())
        rows = rows.replace_schema_metadata(meta)
        digest = hashlib.sha1(json.dumps(sorted(footer.entries)).encode()).hexdigest()[:12]
        folder = self._staging(series, request.job_id)
        self._store().write(
            f"{folder}/unit-{digest}.parquet", lambda out: pq.write_table(rows, out)
        )
        return {key: self.holdings.where(series, month_key(key[1]), "") for key in entries}

    def publish(self, series: Series, job_id: str) -> int:
        """The job's staged units in one transaction on the series' table (an overwrite whose
        predicate names every staged partition): a reader sees the version before, with none
        of them, or the version after, with all. Then the coverage table and the catalog
        learn them, and the staged files go. Run again after a crash, it does the same (an
        overwrite by predicate gives the same table however often it is repeated)."""
        store = self._store()
        folder = self._staging(series, job_id)
        for other in store.children(STAGING):  # a job never published: a re-fetch replaced it
            if other != job_id:
                stale = f"{STAGING}/{other}/{table_path(series)}"
                store.remove([f"{stale}/{n}" for n in store.listing(stale)])
        names = sorted(store.listing(folder))
        if not names:
            return 0
        rels = [f"{folder}/{name}" for name in names]
        footers = [read_footer(store, rel) for rel in rels]
        entries = {k: e for f in footers for k, e in f.entries.items()}
        coverage: dict[str, list[dt.date]] = {}
        for symbol, iso in entries:
            coverage.setdefault(symbol, []).append(dt.date.fromisoformat(iso))
        where = predicate.partitions(coverage)
        empty = with_partition_columns(BAR_SCHEMA.empty_table(), (), np.array([], np.int32))

        def staged() -> pa.RecordBatchReader:
            def batches() -> Iterator[pa.RecordBatch]:
                for rel in rels:
                    with store.open(rel) as src:
                        part = read_file(src).replace_schema_metadata(None)
                    yield from part.select(empty.column_names).cast(empty.schema).to_batches()

            return pa.RecordBatchReader.from_batches(empty.schema, batches())

        job = _provenance(series, job_id)
        self._overwrite(
            self.location.series_uri(series),
            staged,
            where,
            ["month"],
            {**job, "marketpipe.operation": "publish"},
        )
        by_day = {(s, dt.date.fromisoformat(d)): e for (s, d), e in entries.items()}
        last = footers[-1]
        self._cover(
            series, by_day, Footer(entries, last.session, job_id, last.fetched_at), where, job
        )
        store.remove(rels)
        return len(rels)

    def _staging(self, series: Series, job_id: str) -> str:
        return f"{STAGING}/{encode_component(job_id)}/{table_path(series)}"

    def _store(self) -> Store:
        return open_store(self.location.url if self.location.remote else Path(self.location.url))

    def _entries(
        self, request: CommitRequest, bars: Mapping[PartitionKey, int]
    ) -> dict[PartitionKey, Entry]:
        partial = {(s, d) for s, ds in request.partial.items() for d in ds}
        return {
            (symbol, day): Entry(
                bars.get((symbol, day), 0),
                (symbol, day) not in partial,
                request.rejected.get((symbol, day), 0),
            )
            for symbol, days in request.coverage.items()
            for day in days
        }

    def commit(self, request: CommitRequest) -> dict[PartitionKey, str]:
        table = conform(request.table)
        index = index_covered(table, request.coverage)
        entries = self._entries(request, index.counts())
        if not entries:
            return {}
        series = request.series
        where = predicate.partitions(request.coverage)
        job = {
            **_provenance(series, request.job_id),
            **{f"marketpipe.{k}": v for k, v in request.extra_metadata.items()},
        }
        self._overwrite(
            self.location.series_uri(series),
            with_partition_columns(table, index.days, index.day),
            where,
            ["month"],
            {**job, "marketpipe.operation": "commit"},
        )
        footer = Footer(
            {(s, d.isoformat()): e for (s, d), e in entries.items()},
            request.session,
            request.job_id,
            clock.now().isoformat(timespec="seconds"),
        )
        self._cover(series, entries, footer, where, job)
        return {key: self.holdings.where(series, month_key(key[1]), "") for key in entries}

    def _cover(
        self,
        series: Series,
        entries: dict[PartitionKey, Entry],
        footer: Footer,
        where: str,
        job: Mapping[str, str],
    ) -> None:
        """After the bars: the coverage table's rows of the partitions, then the catalog."""
        committed_ns = time.time_ns()
        coverage = rows_for(
            series, entries, footer.session, footer.job_id, footer.fetched_at, committed_ns
        )
        self._overwrite(
            self.location.coverage_uri(),
            coverage,
            f"{predicate.of_series(series)} AND {where}",
            PARTITION_BY,
            {**job, "marketpipe.operation": "coverage"},
        )
        for month in sorted({month_key(d) for _, d in entries}):
            self._record(series, month, footer, committed_ns)

    def _record(self, series: Series, month: str, footer: Footer, committed_ns: int) -> None:
        """Tell the catalog what the commit did to one month, as the coverage table now says,
        without reading it back: the month's partitions join this job's group and leave any
        other group that held them. (A group whose stamp comes out other than the table's is
        read again at the next sync.)"""
        mine = {k: e for k, e in footer.entries.items() if k[1][:7] == month}
        name = f"{GROUP_PREFIX}{footer.job_id}"
        groups = {
            f.name: (f.size, f.mtime_ns) for f in self.catalog.files(series) if f.month == month
        }
        written: dict[str, Footer | None] = {}
        stats: dict[str, tuple[int, int]] = {}
        for other, (_, stamp) in groups.items():
            if other == name:
                continue
            held = self.catalog.footer(series, month, other)
            if held.entries.keys() & mine.keys():
                rest = held.without(mine)
                written[other] = rest if rest.entries else None
                stats[other] = (len(rest.entries), stamp)
        before = self.catalog.footer(series, month, name).entries if name in groups else {}
        merged = {**before, **mine}
        written[name] = Footer(merged, footer.session, footer.job_id, footer.fetched_at)
        stats[name] = (len(merged), committed_ns)
        self.catalog.record(series, month, written, stats)

    def delete(self, series: Series, keys: set[PartitionKey]) -> int:
        """Remove the rows of ``keys`` (symbol, day): one transaction on the bars table, then one
        on the coverage table; returns how many rows went."""
        if not keys:
            return 0
        coverage: dict[str, list[dt.date]] = {}
        for symbol, day in keys:
            coverage.setdefault(symbol, []).append(day)
        where = predicate.partitions(coverage)
        from deltalake import CommitProperties

        props = CommitProperties(custom_metadata={"marketpipe.operation": "delete"})
        removed = 0
        bars = load(self.location.series_uri(series), self.location.options)
        if bars is not None:
            metrics = guarded(bars.table_uri, lambda: bars.delete(where, commit_properties=props))
            removed = int(metrics.get("num_deleted_rows", 0))
        cover = load(self.location.coverage_uri(), self.location.options)
        if cover is not None:
            both = f"{predicate.of_series(series)} AND {where}"
            guarded(cover.table_uri, lambda: cover.delete(both, commit_properties=props))
        self.catalog.sync(series, sorted({month_key(d) for _, d in keys}))
        return removed

    # reading ----------------------------------------------------------------------------------

    def read(self, series: Series) -> pa.Table:
        table = load(self.location.series_uri(series), self.location.options)
        if table is None:
            return BAR_SCHEMA.empty_table()
        rows = guarded(table.table_uri, lambda: table.to_pyarrow_table(columns=list(BAR_COLUMNS)))
        rows = rows.cast(BAR_SCHEMA)
        return rows.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])

    def read_range(
        self, series: Series, symbols: Iterable[str], start: dt.date, end: dt.date
    ) -> pa.Table:
        """The stored rows of ``symbols`` from ``start`` to ``end`` (New York days, inclusive),
        unordered: only the month partitions of those days are scanned, with the symbol and
        time filter pushed down to the Parquet files."""
        table = load(self.location.series_uri(series), self.location.options)
        if table is None:
            return BAR_SCHEMA.empty_table()
        months = [m for m in self.months(series) if month_key(start) <= m <= month_key(end)]
        if not months:
            return BAR_SCHEMA.empty_table()
        lo, hi = day_bounds(start, end)
        where = (
            pc.field("month").isin(months)
            & pc.field("symbol").isin(sorted(set(symbols)))
            & (pc.field("timestamp") >= lo)
            & (pc.field("timestamp") < hi)
        )
        rows = guarded(
            table.table_uri,
            lambda: table.to_pyarrow_table(columns=list(BAR_COLUMNS), filters=where),
        )
        return rows.cast(BAR_SCHEMA)

    def verify(
        self,
        job_paths: Iterable[str],
        completed_at: Callable[[str], list[tuple[str, str, dt.date, int]]],
    ) -> VerifyReport:
        """Each series table against the coverage table (see :mod:`.verify`)."""
        from marketpipe_delta.verify import verify_delta

        return verify_delta(self, job_paths, completed_at)

    def history(self, series: Series) -> list[dict[str, Any]]:
        """The series table's commits, newest first (each carries ``marketpipe.job_id``)."""
        table = load(self.location.series_uri(series), self.location.options)
        return [] if table is None else list(guarded(table.table_uri, table.history))

    # compacting -------------------------------------------------------------------------------

    def months(self, series: Series) -> list[str]:
        return self.holdings.months(series)

    def _files(self, table: Any, month: str) -> tuple[int, int]:
        actions = pa.table(guarded(table.table_uri, lambda: table.get_add_actions(flatten=True)))
        mine = actions.filter(pc.equal(actions["partition.month"], month))
        return mine.num_rows, int(pc.sum(mine["num_records"]).as_py() or 0)

    def compact(self, series: Series, month: str, dry_run: bool = False) -> FolderResult:
        """OPTIMIZE the month's partition of the bars table and of the coverage table (small
        files rewritten into few large ones, one transaction each); after the series' last
        month, VACUUM both: the files no version within ``retention_hours`` still needs go, so
        readers of recent versions keep working."""
        table = load(self.location.series_uri(series), self.location.options)
        if table is None:
            return FolderResult(series, month, 0, 0, 0)
        before, rows = self._files(table, month)
        if dry_run:
            return FolderResult(series, month, before, min(before, 1), rows)
        after = before - self._optimize(table, [("month", "=", month)], before)
        coverage = load(self.location.coverage_uri(), self.location.options)
        if coverage is not None:
            self._optimize(coverage, [*series_filter(series), ("month", "=", month)])
        if month == self.months(series)[-1]:
            self.vacuum(table)
            if coverage is not None:
                self.vacuum(coverage)
        return FolderResult(series, month, before, after, rows)

    def _optimize(self, table: Any, where: list[tuple[str, str, str]], files: int = 2) -> int:
        """OPTIMIZE (bin-packing compaction) the partition ``where``; returns how many fewer
        files it has."""
        if files <= 1:
            return 0
        from deltalake import CommitProperties

        props = CommitProperties(custom_metadata={"marketpipe.operation": "compact"})
        metrics = guarded(
            table.table_uri,
            lambda: table.optimize.compact(partition_filters=where, commit_properties=props),
        )
        return int(metrics["numFilesRemoved"]) - int(metrics["numFilesAdded"])

    def vacuum(self, table: Any) -> list[str]:
        """Delete the files no version newer than ``retention_hours`` refers to."""
        from deltalake.exceptions import DeltaError

        try:
            return list(
                table.vacuum(
                    retention_hours=self.retention_hours,
                    dry_run=False,
                    enforce_retention_duration=True,
                )
            )
        except DeltaError as exc:
            if "retention" in str(exc).lower():
                raise InvalidInputError(
                    f"sink delta: retention_hours={self.retention_hours} is shorter than the "
                    f"table's own retention ({str(exc).splitlines()[0][:160]})"
                ) from None
            raise StorageError(f"delta table {table.table_uri}: vacuum failed: {exc}") from None


def _provenance(series: Series, job_id: str) -> dict[str, str]:
    """The commit metadata every Delta version of the sink carries: which job, which series."""
    return {
        "marketpipe.job_id": job_id,
        "marketpipe.provider": series.provider,
        "marketpipe.feed": series.feed,
        "marketpipe.adjustment": series.adjustment,
        "marketpipe.timeframe": series.timeframe.value,
    }


def with_partition_columns(table: pa.Table, days: tuple[dt.date, ...], day: np.ndarray) -> pa.Table:
    """``table`` with ``day`` (date) and ``month`` (``YYYY-MM``) added, timestamps in the
    microseconds Delta stores (a bar time finer than that is refused, never rounded)."""
    ordinals = np.array([d.toordinal() - _EPOCH for d in days], dtype=np.int32)
    month_names = sorted({month_key(d) for d in days})
    month_pos = np.array([month_names.index(month_key(d)) for d in days], dtype=np.int32)
    n = table.num_rows
    day_values = pa.array(ordinals[day] if n else np.zeros(0, np.int32), pa.int32()).cast(
        pa.date32()
    )
    months = pa.DictionaryArray.from_arrays(
        pa.array(month_pos[day] if n else np.zeros(0, np.int32), pa.int32()),
        pa.array(month_names or [""], pa.string()),
    ).cast(pa.string())
    try:
        stamps = table["timestamp"].cast(pa.timestamp("us", tz="UTC"), safe=True)
    except pa.ArrowInvalid:
        raise StorageError(
            "a bar time finer than a microsecond cannot be stored in Delta"
        ) from None
    out = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", stamps)
    return out.append_column("day", day_values).append_column("month", months)
