"""Versioned records kept through the dataset's own storage: the ledger of corporate actions and
the instrument master are both made of them.

Records live in a folder under ``_marketpipe/``; each batch that added or changed something is
one Arrow IPC file (``.arrow``, so a ``**/*.parquet`` glob over the data dir never takes it for
bars), created once under a unique name, never rewritten. A record is keyed by (provider, id); a
record the provider later corrects is a newer version of the same key, and the older version
stays readable.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.ipc as ipc

from marketpipe.model.errors import StorageError
from marketpipe.storage.store import Store

SUFFIX = ".arrow"


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def end_of(day: dt.date) -> pa.Scalar:
    """The first instant after ``day`` (UTC), as a ``fetched_at`` bound."""
    moment = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    return pa.scalar(moment, pa.timestamp("us", tz="UTC"))


def read_batches(store: Store, folder: str, schema: pa.Schema, what: str) -> pa.Table:
    """Every record of every batch in ``folder``, in ``schema``."""
    tables = []
    for name in sorted(store.listing(folder, SUFFIX)):
        where = f"{store.url}/{folder}/{name}"
        body = store.get(f"{folder}/{name}")
        if body is None:
            continue  # removed since it was listed
        try:
            table = ipc.open_file(pa.BufferReader(body)).read_all()
            tables.append(table.select(schema.names).cast(schema))
        except (pa.ArrowException, KeyError, ValueError) as exc:
            raise StorageError(f"{where} is not a {what} file MarketPipe can read: {exc}") from None
    return pa.concat_tables(tables) if tables else schema.empty_table()


def write_batch(store: Store, folder: str, table: pa.Table) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    name = f"{folder}/batch-{stamp}-{uuid.uuid4().hex[:12]}{SUFFIX}"
    if not store.create(name, _ipc(table)):
        raise StorageError(f"{store.url}/{name} exists already")  # a uuid: never


def latest_versions(table: pa.Table) -> pa.Table:
    """The newest version (by fetched_at, then by order) of each (provider, id)."""
    if table.num_rows == 0:
        return table
    order = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    order = order.sort_by([("fetched_at", "ascending"), ("_row", "ascending")])
    keep: dict[tuple[str, str], int] = {}
    for i, (provider, ident) in enumerate(
        zip(order["provider"].to_pylist(), order["id"].to_pylist(), strict=True)
    ):
        keep[(provider, ident)] = i
    return order.take(pa.array(sorted(keep.values()), pa.int64())).drop_columns(["_row"])


def new_and_changed(
    current: pa.Table, incoming: pa.Table, values: Sequence[str]
) -> tuple[pa.Table, pa.Table]:
    """``(new, changed)``: the latest version of each ``incoming`` record whose key ``current``
    (every version so far) lacks, and of those whose ``values`` differ from its latest."""
    known = {
        (r["provider"], r["id"]): tuple(r[c] for c in values)
        for r in latest_versions(current).to_pylist()
    }
    latest = latest_versions(incoming)
    new_rows, changed_rows = [], []
    for i, row in enumerate(latest.select(["provider", "id", *values]).to_pylist()):
        key = (row["provider"], row["id"])
        if key not in known:
            new_rows.append(i)
        elif known[key] != tuple(row[c] for c in values):
            changed_rows.append(i)
    return (
        latest.take(pa.array(new_rows, pa.int64())),
        latest.take(pa.array(changed_rows, pa.int64())),
    )
