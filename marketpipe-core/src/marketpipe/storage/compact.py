"""Compaction: rewrite a month folder's files into as few as its size warrants.

Under the folder's lock (ingests into that folder wait; they are locked out, never mixed in), the
partitions of all files are regrouped by symbol into files of at most ``ROWS_PER_FILE`` rows
(one file a month for typical minute data), sorted by (symbol, timestamp), each with the merged
footer of its partitions. Memory is bounded by one output file's rows: each is read, symbol
group by symbol group, from the inputs.

A partition held by two files (a commit interrupted before its clean-up, or an interrupted
compaction) is taken from the newest only, so compaction is idempotent and resumable: a crash
after the new files appear and before the old ones go leaves both, which readers may see for
that moment, and the next run (or ingest) resolves them. The catalog is updated after the files,
in the same protocol as a commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.errors import StorageError
from marketpipe.model.schema import SCHEMA_VERSION
from marketpipe.model.values import Series, Session
from marketpipe.plugins.sink import FolderResult
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.footer import Entry, Footer, read_footer, row_keys, unreadable
from marketpipe.storage.layout import month_prefix
from marketpipe.storage.parquet_files import read_file, row_group_rows, sort_rows, write_bars
from marketpipe.storage.store import Prepared, Store

ROWS_PER_FILE = 2_000_000

Key = tuple[str, str]


def plan_groups(entries: dict[Key, Entry], rows_per_file: int) -> list[list[str]]:
    """Symbols grouped, in order, into outputs of at most ``rows_per_file`` rows (a symbol
    with more rows than that gets a file of its own)."""
    per_symbol: dict[str, int] = {}
    for (symbol, _), entry in entries.items():
        per_symbol[symbol] = per_symbol.get(symbol, 0) + entry.bars
    groups: list[list[str]] = [[]]
    size = 0
    for symbol in sorted(per_symbol):
        if groups[-1] and size + per_symbol[symbol] > rows_per_file:
            groups.append([])
            size = 0
        groups[-1].append(symbol)
        size += per_symbol[symbol]
    return [g for g in groups if g]


def compact_folder(
    store: Store,
    catalog: Catalog,
    series: Series,
    month: str,
    rows_per_file: int = ROWS_PER_FILE,
    dry_run: bool = False,
    compression: str = "zstd",
) -> FolderResult:
    """Compact one month folder of ``store`` (a local folder or an object store)."""
    folder = month_prefix(series, month)
    with store.lock(folder):
        catalog.sync_folder(series, month)
        blocked = catalog.unreadable(series, month)
        if blocked:
            raise StorageError(blocked[0][1])
        footers = bar_footers(store, folder)  # a Parquet file MarketPipe did not write stays
        owner = owners(footers)
        merged = {k: footers[n].entries[k] for k, n in owner.items()}
        duplicates = sum(len(f.entries) for f in footers.values()) - len(owner)
        groups = plan_groups(merged, rows_per_file)
        rows = sum(e.bars for e in merged.values())
        result = FolderResult(series, month, len(footers), len(groups), rows, duplicates)
        if not footers or (len(groups) >= len(footers) and not duplicates):
            return attrs.evolve(result, files_after=len(footers))  # already compact
        if dry_run:
            return result
        newest = max(f.fetched_at for f in footers.values())
        sources: dict[str, str] = {}  # each day's source as its newest file recorded it
        for held in sorted(footers.values(), key=lambda f: f.fetched_at):
            sources.update(held.sources)
        prepared: list[tuple[Prepared, Footer]] = []
        try:
            for group in groups:
                chosen = set(group)
                entries = {k: e for k, e in merged.items() if k[0] in chosen}
                table = gather_rows(store, folder, footers, owner, chosen)
                footer = Footer(entries, _session(footers), "compact", newest, sources)
                digest = hashlib.sha1(json.dumps(sorted(entries)).encode()).hexdigest()[:12]
                meta = _metadata(series, footer, footers)
                pending = store.prepare(
                    f"{folder}/part-compact-{digest}.parquet",
                    write_bars(
                        table.replace_schema_metadata(meta), compression, row_group_rows(store)
                    ),
                )
                prepared.append((pending, footer))
        except BaseException:
            for pending, _ in prepared:
                store.discard(pending)
            raise
        for pending, _ in prepared:
            store.publish(pending)
        outputs = {pending.rel.rsplit("/", 1)[-1] for pending, _ in prepared}
        store.remove([f"{folder}/{name}" for name in footers if name not in outputs])
        changes: dict[str, Footer | None] = {n: None for n in footers if n not in outputs}
        changes.update({pending.rel.rsplit("/", 1)[-1]: footer for pending, footer in prepared})
        catalog.record(series, month, changes)
        return result


def owners(footers: dict[str, Footer]) -> dict[Key, str]:
    """Each partition's file: the newest that holds it (a duplicate left by an interruption
    goes)."""
    owner: dict[Key, str] = {}
    for name in sorted(footers, key=lambda n: (footers[n].fetched_at, n)):
        for key in footers[name].entries:
            owner[key] = name
    return owner


def bar_footers(store: Store, folder: str) -> dict[str, Footer]:
    """The footers of the folder's bar files (a Parquet file MarketPipe did not write is not
    one)."""
    footers = {}
    for name in sorted(store.listing(folder)):
        footer = read_footer(store, f"{folder}/{name}")
        if footer.entries or footer.job_id:
            footers[name] = footer
    return footers


def _session(footers: dict[str, Footer]) -> Session:
    sessions = {f.session for f in footers.values()}
    # A folder mixing sessions keeps the narrower claim: extended bars still hold regular ones.
    return Session.REGULAR if Session.REGULAR in sessions else Session.EXTENDED


def gather_rows(
    store: Store,
    folder: str,
    footers: dict[str, Footer],
    owner: dict[Key, str],
    symbols: set[str],
) -> pa.Table:
    """The rows of ``symbols`` that each partition's owning file holds, sorted."""
    parts = []
    wanted = pa.array(sorted(symbols), pa.string())
    for name in sorted(footers):
        owned = sorted(f"{s}|{d}" for (s, d), n in owner.items() if n == name and s in symbols)
        if not owned:
            continue
        rel = f"{folder}/{name}"
        try:
            with store.open(rel) as source:
                table = read_file(
                    source,
                    filters=pc.is_in(pc.field("symbol"), value_set=wanted),
                    symbols=sorted(symbols),
                )
        except (OSError, pa.ArrowException) as exc:
            raise unreadable(f"{store.url}/{rel}", exc) from None
        keep = pc.is_in(row_keys(table), value_set=pa.array(owned, pa.string()))
        parts.append(table.filter(keep).replace_schema_metadata(None))
    table = pa.concat_tables(parts) if parts else None
    if table is None:
        raise StorageError(
            f"compaction of {store.url}/{folder} found no rows for {sorted(symbols)[:3]}"
        )
    return sort_rows(table)


def _metadata(series: Series, footer: Footer, inputs: dict[str, Footer]) -> dict[bytes, bytes]:
    meta = {
        "marketpipe.schema_version": SCHEMA_VERSION,
        "marketpipe.provider": series.provider,
        "marketpipe.feed": series.feed,
        "marketpipe.adjustment": series.adjustment,
        "marketpipe.timeframe": series.timeframe.value,
        "marketpipe.job_id": "compact",
        "marketpipe.fetched_at": footer.fetched_at,
        "marketpipe.compacted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "marketpipe.compacted_from": json.dumps(sorted({f.job_id for f in inputs.values()})),
    }
    out = {k.encode(): v.encode() for k, v in meta.items()}
    out.update(footer.metadata())
    return out
