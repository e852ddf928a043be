"""The built-in Parquet sink: zstd files per (unit, month), committed atomically, idempotent.

A commit writes the unit's new file, then removes the covered (symbol, day) rows from the other
files of the same month folder that hold them (rewriting each atomically, or deleting it when
nothing else is left in it), then records the change in the catalog. So re-ingesting a day
replaces exactly that day's rows, also where a file holds many days and symbols. Each file's
footer records the partitions it covers; the catalog, synced with the folder at the start of the
commit, says which files hold the covered ones without reading every footer. The folder is locked
while a commit changes it, across threads and processes; the unit's file is encoded before, so
units of one month (every unit of a whole market's day) encode side by side.

If a crash lands between the new file and the clean-up, both files hold the covered rows until
the unit is committed again (the job store has not recorded it, so a resume does exactly that; the
catalog learns of both files from the folder and lists both as holders). Meanwhile MarketPipe's
readers (``read``, ``read_range``, so ``marketpipe.read`` and ``mp read``) take such a partition
from the newer file only: one committed version, never both; a raw glob over the files sees both
until then, and ``mp verify`` reports the duplicate. A crash before the
catalog is updated leaves it behind the files, never ahead: the next sync reads what changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model import clock
from marketpipe.model.calendar import day_bounds
from marketpipe.model.errors import InvalidInputError, StorageError
from marketpipe.model.partition import PartitionKey
from marketpipe.model.schema import SCHEMA_VERSION, conform, schema_of
from marketpipe.model.values import Series
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.sink import CommitRequest, CompletedAt, FolderResult
from marketpipe.plugins.specs import Setting, SinkSpec
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.compact import compact_folder
from marketpipe.storage.footer import (
    Entry,
    Footer,
    count_rows,
    drop_partitions,
    parse_footer,
    row_keys,
    unreadable,
)
from marketpipe.storage.holdings import FileHoldings
from marketpipe.storage.layout import STAGING, month_key, month_prefix
from marketpipe.storage.object_store import ObjectStore
from marketpipe.storage.parquet_files import (
    COMPRESSIONS,
    encoded,
    file_metadata,
    is_sorted,
    read_file,
    read_symbols,
    readers,
    row_group_rows,
    sort_rows,
    write_bars,
)
from marketpipe.storage.partition_index import index_covered
from marketpipe.storage.store import STAGED, Prepared, Store, Writer
from marketpipe.storage.stores import LocalStore
from marketpipe.storage.verify import VerifyReport, verify_dataset

FSYNC_ENV = "MARKETPIPE_FSYNC"

Coverage = dict[str, set[str]]  # symbol -> ISO days


class ParquetSink:
    """Commits validated bars under ``root`` (see :mod:`marketpipe.storage.layout`), or into
    ``store`` (an object store) with the catalog kept under the local ``root``."""

    def __init__(
        self,
        root: Path,
        durable: bool | None = None,
        compression: str = "zstd",
        store: Store | None = None,
    ) -> None:
        self.root = Path(root)
        self.durable = os.environ.get(FSYNC_ENV, "1") != "0" if durable is None else durable
        self.compression = compression
        self.store: Store = store if store is not None else LocalStore(self.root, self.durable)
        self.holdings = FileHoldings(self.store)
        self.catalog = Catalog(self.root, self.holdings)

    def close(self) -> None:
        self.catalog.close()

    def months(self, series: Series) -> list[str]:
        return self.holdings.months(series)

    def compact(self, series: Series, month: str, dry_run: bool = False) -> FolderResult:
        return compact_folder(
            self.store,
            self.catalog,
            series,
            month,
            dry_run=dry_run,
            compression=self.compression,
        )

    def verify(self, job_paths: Iterable[str], completed_at: CompletedAt) -> VerifyReport:
        return verify_dataset(self.store, self.catalog, job_paths, completed_at)

    def read(self, series: Series) -> pa.Table:
        """Every stored row of ``series``; a partition two files hold (a commit cut short)
        reads from the newer one only (:meth:`CatalogQueries.shadowed`)."""
        schema = schema_of(series.timeframe)
        months = self.months(series)
        self.catalog.sync(series, months)
        shadowed = self.catalog.shadowed(series)
        tables = []
        for month in months:
            folder = month_prefix(series, month)
            for name in sorted(self.store.listing(folder)):
                rel = f"{folder}/{name}"
                table = self._read(rel).cast(schema)
                tables.append(drop_partitions(table, shadowed.get(rel, set())))
        if not tables:
            return schema.empty_table()
        table = pa.concat_tables(tables).replace_schema_metadata(None)
        return sort_rows(table)

    def read_range(
        self, series: Series, symbols: Iterable[str], start: dt.date, end: dt.date
    ) -> pa.Table:
        """The stored rows of ``symbols`` from ``start`` to ``end`` (New York days, inclusive),
        in the canonical columns, unordered: only the files the catalog says hold them are
        read, and row groups whose symbol or time statistics fall outside are not decoded."""
        wanted = sorted(set(symbols))
        schema = schema_of(series.timeframe)
        first, last = month_key(start), month_key(end)
        lo, hi = day_bounds(start, end)
        # The range beside isin lets row groups be skipped on their symbol statistics.
        where = (
            (pc.field("symbol") >= wanted[0])
            & (pc.field("symbol") <= wanted[-1])
            & pc.field("symbol").isin(wanted)
            & (pc.field("timestamp") >= lo)
            & (pc.field("timestamp") < hi)
        )
        # The catalog, synced with those month folders, names the files that hold the
        # symbols on those days: the others are not opened.
        self.catalog.sync(series, [m for m in self.months(series) if first <= m <= last])
        rels = self.catalog.files_of(series, wanted, start, end)
        if not rels:
            return schema.empty_table()
        shadowed = self.catalog.shadowed(series, start, end, wanted)
        if shadowed:  # a commit cut short: those files are read alone, without the old rows
            parts = [
                drop_partitions(
                    self._read(rel, where, wanted).cast(schema), shadowed.get(rel, set())
                )
                for rel in rels
            ]
            return pa.concat_tables(parts).replace_schema_metadata(None)
        local = self.store
        if isinstance(local, LocalStore):
            # Side by side, each file's row groups pruned on their symbol statistics.
            def one(rel: str) -> pa.Table:
                try:
                    return read_symbols(str(local.file_to_read(rel)), wanted, lo, hi, schema)
                except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
                    raise unreadable(f"{self.store.url}/{rel}", exc) from None

            table = pa.concat_tables(list(readers().map(one, rels)))
        else:  # objects: fetched side by side, each filtered as it is decoded
            with ThreadPoolExecutor(max_workers=min(8, len(rels))) as pool:
                parts = list(
                    pool.map(lambda rel: self._read(rel, where, wanted).cast(schema), rels)
                )
            table = pa.concat_tables(parts)
        return table.replace_schema_metadata(None)

    def _read(
        self, rel: str, where: pc.Expression | None = None, symbols: list[str] | None = None
    ) -> pa.Table:
        try:
            with self.store.open(rel) as src:
                return read_file(src, filters=where, symbols=symbols)
        except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
            raise unreadable(f"{self.store.url}/{rel}", exc) from None

    def commit(self, request: CommitRequest) -> dict[PartitionKey, str]:
        return self._commit(request, staged=False)

    def stage(self, request: CommitRequest) -> dict[PartitionKey, str]:
        """Each month's file written whole as ``<name>.staged``, which neither the catalog nor a
        ``*.parquet`` glob sees, until :meth:`publish`."""
        return self._commit(request, staged=True)

    def _commit(self, request: CommitRequest, staged: bool) -> dict[PartitionKey, str]:
        # Checked once, on the committer's symbol codes before they are cast back to text: the
        # rows of one month, taken from rows in order, are in order too.
        ordered = is_sorted(request.table)
        table = conform(request.table, schema=schema_of(request.timeframe))
        # Indexed before the cast to strings: the committer's symbol codes are reused.
        index = index_covered(request.table, request.coverage)
        bars = index.counts()
        partial = {(s, d) for s, ds in request.partial.items() for d in ds}
        # A day's text and month made once: a whole market's unit covers hundreds of symbols
        # on the same day or few.
        days = {d for ds in request.coverage.values() for d in ds}
        named = {d: (d.isoformat(), month_key(d)) for d in days}
        months: dict[str, dict[tuple[str, str], Entry]] = {}
        keys: dict[str, list[PartitionKey]] = {}
        for symbol, symbol_days in request.coverage.items():
            for day in symbol_days:
                key, (iso, month) = (symbol, day), named[day]
                months.setdefault(month, {})[(symbol, iso)] = Entry(
                    bars.get(key, 0), key not in partial, request.rejected.get(key, 0)
                )
                keys.setdefault(month, []).append(key)
        month_of_day = np.array([month_key(d) for d in index.days])
        fetched_at = clock.now().isoformat(timespec="seconds")
        result: dict[PartitionKey, str] = {}
        for month, entries in sorted(months.items()):
            rows = (
                table.filter(pa.array(month_of_day[index.day] == month))
                if len(months) > 1
                else table
            )
            footer = Footer(
                entries,
                request.session,
                request.job_id,
                fetched_at,
                {d.isoformat(): v for d, v in request.sources.items() if month_key(d) == month},
            )
            if not ordered:
                rows = sort_rows(rows)
            rel = self._commit_month(request.series, month, rows, footer, request, staged)
            result.update(dict.fromkeys(keys[month], rel))
        return result

    def _metadata(self, request: CommitRequest, footer: Footer) -> dict[bytes, bytes]:
        schema = (schema_of(request.timeframe).metadata or {}).get(b"marketpipe.schema_version")
        meta = {
            "marketpipe.schema_version": schema.decode() if schema else SCHEMA_VERSION,
            "marketpipe.provider": request.provider,
            "marketpipe.feed": request.feed,
            "marketpipe.adjustment": request.adjustment,
            "marketpipe.timeframe": request.timeframe.value,
            "marketpipe.job_id": request.job_id,
            "marketpipe.fetched_at": footer.fetched_at,
            **{f"marketpipe.{k}": v for k, v in request.extra_metadata.items()},
        }
        out = {k.encode(): v.encode() for k, v in meta.items()}
        out.update(footer.metadata())
        return out

    def _writer(self, table: pa.Table, metadata: Mapping[bytes, bytes]) -> Writer:
        table = table.replace_schema_metadata(dict(metadata))
        return write_bars(table, self.compression, row_group_rows(self.store))

    def _prepare_rest(self, other: str, overlap: set[str]) -> tuple[Prepared, Footer]:
        """``other``'s rows outside ``overlap``, written but not yet visible, to replace it."""
        old_table = self._read(other)
        try:
            with self.store.open(other) as src:
                meta = file_metadata(src)
        except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
            raise unreadable(f"{self.store.url}/{other}", exc) from None
        try:
            footer = parse_footer(meta, lambda: count_rows(old_table))
        except (ValueError, TypeError, KeyError) as exc:
            raise unreadable(f"{self.store.url}/{other}", exc) from None
        keep = pc.invert(
            pc.is_in(row_keys(old_table), value_set=pa.array(sorted(overlap), pa.string()))
        )
        rest_footer = footer.without(tuple(k.split("|", 1)) for k in overlap)  # type: ignore[misc]
        rest = old_table.filter(keep).replace_schema_metadata(rest_footer.over(meta))
        writer = write_bars(rest, self.compression, row_group_rows(self.store))
        return self.store.prepare(other, writer), rest_footer

    def _commit_month(
        self,
        series: Series,
        month: str,
        table: pa.Table,
        footer: Footer,
        request: CommitRequest,
        staged: bool = False,
    ) -> str:
        coverage: Coverage = {}
        for symbol, iso in footer.entries:
            coverage.setdefault(symbol, set()).add(iso)
        digest = hashlib.sha1(
            json.dumps({s: sorted(d) for s, d in sorted(coverage.items())}).encode()
        ).hexdigest()[:12]
        rel = f"{month_prefix(series, month)}/part-{request.job_id}-{digest}.parquet"
        if staged:
            self.store.write(rel + STAGED, self._writer(table, self._metadata(request, footer)))
            return rel
        # Encoded before the folder's lock is taken: the lock is held while the file is put in
        # place and the folder's other files and catalog are brought in line, not while the
        # rows are encoded. Units of one month (a whole market's day: every unit) took turns
        # on the encoding too, and the lock was held for 70% of a job (bench_flatfiles).
        body = encoded(self._writer(table, self._metadata(request, footer)))
        self._replace(series, month, set(footer.entries), (rel, body, footer))
        return rel

    def publish(self, series: Series, job_id: str) -> int:
        """Show the staged files of ``job_id`` together. A marker (``_marketpipe/staging/<job
        id>.staged``) first hides the job's files from every catalog that syncs; the files are
        renamed into place (a ``*.parquet`` glob sees each month switch as it is renamed); the
        marker's removal then switches the catalog's view in one transaction, so
        ``marketpipe.read`` sees the old rows or the new, never a mix; last, the older files
        give up the partitions the published ones hold (readers meanwhile take the newer)."""
        mine = f"part-{job_id}-"
        marker = f"{STAGING}/{job_id}{STAGED}"
        months = self.months(series)
        staged: dict[str, list[str]] = {}
        for month in months:
            folder = month_prefix(series, month)
            for name in sorted(self.store.listing(folder, suffix=STAGED)):
                if name.startswith(mine):
                    staged.setdefault(month, []).append(name)
                else:  # another job's, never published: a later re-fetch replaced it
                    self.store.remove([f"{folder}/{name}"])
        for month in staged:  # a file nobody can read blocks the publish, as it blocks a commit
            with self.store.lock(month_prefix(series, month)):
                self.catalog.sync_folder(series, month)
            blocked = self.catalog.unreadable(series, month)
            if blocked:
                raise StorageError(blocked[0][1])
        if staged:
            self.store.write(marker, lambda out: None)  # its name says which job
            self.catalog.sync_staging()
            for month, names in staged.items():
                folder = month_prefix(series, month)
                with self.store.lock(folder):
                    for name in names:
                        self.store.rename(f"{folder}/{name}", f"{folder}/{name[: -len(STAGED)]}")
                self.catalog.sync(series, [month])
        if staged or self.store.get(marker) is not None:
            self.store.remove([marker])
        self.catalog.sync_staging()  # the switch
        for month in sorted(
            {f.month for f in self.catalog.files(series) if f.name.startswith(mine)}
        ):
            self._drop_shadowed(series, month)
        return sum(len(names) for names in staged.values())

    def _drop_shadowed(self, series: Series, month: str) -> None:
        """Take out of the month's files the partitions a newer file holds too."""
        first = dt.date.fromisoformat(f"{month}-01")
        last = (first + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
        with self.store.lock(month_prefix(series, month)):
            self.catalog.sync_folder(series, month)
            shadowed = self.catalog.shadowed(series, first, last)
            if not shadowed:
                return
            changes: dict[str, Footer | None] = {}
            prepared: list[tuple[Prepared, Footer]] = []
            try:
                for rel, keys in sorted(shadowed.items()):
                    name = rel.rsplit("/", 1)[-1]
                    held = self.catalog.entries(series, month, name)
                    gone = {f"{s}|{dt.date.fromordinal(d).isoformat()}" for s, d in keys}
                    if {f"{s}|{d}" for s, d in held} <= gone:
                        changes[name] = None
                        continue
                    prepared.append(self._prepare_rest(rel, gone))
            except BaseException:
                for pending, _ in prepared:
                    self.store.discard(pending)
                raise
            for pending, rest in prepared:
                self.store.publish(pending)
                changes[pending.rel.rsplit("/", 1)[-1]] = rest
            self.store.remove(
                [f"{month_prefix(series, month)}/{n}" for n, f in changes.items() if f is None]
            )
            self.catalog.record(series, month, changes)

    def delete(self, series: Series, keys: set[PartitionKey]) -> int:
        """Remove the rows of ``keys`` (symbol, day) from the series, atomically per month
        folder; returns how many rows went."""
        by_month: dict[str, set[tuple[str, str]]] = {}
        for symbol, day in keys:
            by_month.setdefault(month_key(day), set()).add((symbol, day.isoformat()))
        removed = 0
        for month, month_keys in sorted(by_month.items()):
            removed += self._replace(series, month, month_keys, None)
        return removed

    def _replace(
        self,
        series: Series,
        month: str,
        keys: set[tuple[str, str]],
        new: tuple[str, Writer, Footer] | None,
    ) -> int:
        """Write ``new`` (if any), then take ``keys``' rows out of the folder's other files,
        then record it all in the catalog; returns the rows taken out."""
        folder = month_prefix(series, month)
        rel = new[0] if new is not None else None
        if new is None and not self.store.listing(folder):
            return 0
        new_keys = {f"{s}|{d}" for s, d in keys}
        with self.store.lock(folder):
            # The catalog, in step with the folder, names the files holding covered rows. A file
            # it cannot read blocks the commit while the folder is still as it was.
            self.catalog.sync_folder(series, month)
            blocked = self.catalog.unreadable(series, month)
            if blocked:
                raise StorageError(blocked[0][1])
            others: list[tuple[str, dict[str, int]]] = []
            holders = self.catalog.files_holding(
                series, [(s, dt.date.fromisoformat(d)) for s, d in keys]
            )
            for other in sorted(holders):
                if other != rel:
                    held = self.catalog.entries(series, month, other.rsplit("/", 1)[-1])
                    others.append((other, {f"{s}|{d}": n for (s, d), n in held.items()}))
            stats: dict[str, tuple[int, int]] = {}
            if new is not None:
                stats[new[0].rsplit("/", 1)[-1]] = self.store.write(new[0], new[1])
            # The new rows are in place; the covered rows of older files go next. Rewrites are
            # prepared (written, not yet visible) first: if one fails (a full disk), the new file
            # is removed and the folder holds the old rows, never both.
            prepared: list[tuple[Prepared, Footer]] = []
            removed: list[str] = []
            try:
                for other, old in others:
                    if set(old) <= new_keys:
                        removed.append(other)
                        continue
                    pending, rest = self._prepare_rest(other, set(old) & new_keys)
                    prepared.append((pending, rest))
            except BaseException:
                for pending, _ in prepared:
                    self.store.discard(pending)
                if rel is not None:
                    self.store.remove([rel])
                raise
            for pending, _ in prepared:
                self.store.publish(pending)
            self.store.remove(removed)
            changes: dict[str, Footer | None] = {}
            if new is not None:
                changes[new[0].rsplit("/", 1)[-1]] = new[2]
            changes.update({p.rel.rsplit("/", 1)[-1]: rest for p, rest in prepared})
            changes.update({other.rsplit("/", 1)[-1]: None for other in removed})
            self.catalog.record(series, month, changes, stats)
        return sum(n for _, old in others for k, n in old.items() if k in new_keys)


def build(root: Path | str, settings: Mapping[str, Any]) -> ParquetSink:
    compression = str(settings.get("compression") or "zstd").strip().lower()
    if compression not in COMPRESSIONS:
        raise InvalidInputError(
            f"sink parquet: compression must be one of {', '.join(COMPRESSIONS)}, "
            f"got {compression!r}"
        )
    if isinstance(root, str) and "://" in root:
        from marketpipe.storage.location import state_root

        return ParquetSink(state_root(root), compression=compression, store=ObjectStore(root))
    return ParquetSink(Path(root), compression=compression)


@hookimpl
def marketpipe_sinks() -> list[SinkSpec]:
    return [
        SinkSpec(
            name="parquet",
            factory=build,
            description="hive-partitioned Parquet, atomic commits, idempotent re-ingest; bars, "
            "trades and quotes",
            kinds=("bars", "trades", "quotes"),
            settings=(
                Setting(
                    "compression",
                    f"codec of new files: {', '.join(COMPRESSIONS)}",
                    default="zstd",
                ),
            ),
        )
    ]
