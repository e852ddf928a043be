"""The dataset's ledger of corporate actions, kept through the dataset's own storage.

It lives under ``_marketpipe/actions/`` of the dataset (a local folder, or the bucket of an
``s3://`` dataset, whichever sink writes the bars): each batch of records that added or changed
something is one Arrow IPC file (``.arrow``, so a ``**/*.parquet`` glob over the data dir never
takes it for bars), created once under a unique name, never rewritten. A record is keyed by
(provider, id); a record the provider later corrects is a newer version of the same key, and the
older version stays readable: :meth:`Ledger.actions` with ``as_of`` gives what the ledger knew
on that day. Records that make no sense (:func:`~marketpipe.model.actions.check_actions`) go to
``_marketpipe/actions/rejected/`` with the reason, and are never applied.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterable, Mapping

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from marketpipe.model.actions import (
    ACTION_COLUMNS,
    ACTION_SCHEMA,
    REJECTED_ACTION_SCHEMA,
    check_actions,
)
from marketpipe.model.errors import StorageError
from marketpipe.storage.layout import META_DIR
from marketpipe.storage.store import Store

FOLDER = f"{META_DIR}/actions"
REJECTED = f"{FOLDER}/rejected"
SUFFIX = ".arrow"
#: What a version is compared on: a record fetched again with the same values is not new.
_VALUES = tuple(c for c in ACTION_COLUMNS if c not in ("fetched_at", "record"))


@attrs.frozen
class Added:
    """What :meth:`Ledger.add` changed."""

    #: Records the ledger did not have (keys new to it), then records with other values than
    #: its latest version of them (corrections), in the canonical schema.
    new: pa.Table
    changed: pa.Table
    rejected: pa.Table

    @property
    def any(self) -> bool:
        return bool(self.new.num_rows or self.changed.num_rows)


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _end_of(day: dt.date) -> pa.Scalar:
    moment = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    return pa.scalar(moment, pa.timestamp("us", tz="UTC"))


class Ledger:
    """The ledger of the dataset whose files are in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _read(self, folder: str, schema: pa.Schema) -> pa.Table:
        tables = []
        for name in sorted(self.store.listing(folder, SUFFIX)):
            where = f"{self.store.url}/{folder}/{name}"
            body = self.store.get(f"{folder}/{name}")
            if body is None:
                continue  # removed since it was listed
            try:
                table = ipc.open_file(pa.BufferReader(body)).read_all()
                tables.append(table.select(schema.names).cast(schema))
            except (pa.ArrowException, KeyError, ValueError) as exc:
                raise StorageError(
                    f"{where} is not a ledger file MarketPipe can read: {exc}"
                ) from None
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def versions(self) -> pa.Table:
        """Every version of every record, oldest first."""
        return self._read(FOLDER, ACTION_SCHEMA).sort_by([("fetched_at", "ascending")])

    def rejected(self) -> pa.Table:
        return self._read(REJECTED, REJECTED_ACTION_SCHEMA)

    def actions(
        self,
        *,
        as_of: dt.date | None = None,
        provider: str | None = None,
        symbols: Iterable[str] | None = None,
    ) -> pa.Table:
        """The latest version of each record (as of the end of ``as_of``: only what was
        fetched by then, and only actions processed by then), optionally of one provider and
        of some symbols (as the old or the new symbol), ordered by ex-date."""
        table = self.versions()
        if as_of is not None:
            table = table.filter(
                pc.and_(
                    pc.less(table["fetched_at"], _end_of(as_of)),
                    pc.less_equal(table["process_date"], pa.scalar(as_of, pa.date32())),
                )
            )
        if provider is not None:
            table = table.filter(pc.equal(table["provider"], provider))
        latest = latest_versions(table)
        if symbols is not None:
            wanted = pa.array(sorted(set(symbols)), pa.string())
            latest = latest.filter(
                pc.or_(
                    pc.is_in(latest["symbol"], value_set=wanted),
                    pc.fill_null(pc.is_in(latest["new_symbol"], value_set=wanted), False),
                )
            )
        return latest.sort_by(
            [("ex_date", "ascending"), ("symbol", "ascending"), ("id", "ascending")]
        )

    def add(self, table: pa.Table, refused: Mapping[tuple[str, str], str] | None = None) -> Added:
        """Keep ``table``'s records: those that make no sense (by themselves, or by
        ``refused``: ``(provider, id) -> reason``, what the caller found against the bars) are
        set aside with the reason, once; of the rest, those new to the ledger or with other
        values than its latest version are written, in one new file. Returns what changed."""
        valid, rejected = check_actions(table)
        if refused and valid.num_rows:
            reasons = [
                refused.get((p, i))
                for p, i in zip(valid["provider"].to_pylist(), valid["id"].to_pylist(), strict=True)
            ]
            out = pa.array([r is not None for r in reasons])
            also = valid.filter(out).append_column(
                "reason", pa.array([r for r in reasons if r is not None], pa.string())
            )
            rejected = pa.concat_tables([rejected, also.cast(REJECTED_ACTION_SCHEMA)])
            valid = valid.filter(pc.invert(out))
        rejected = self._not_yet_rejected(rejected)
        if rejected.num_rows:
            self._write(REJECTED, rejected)
        current = {
            (r["provider"], r["id"]): tuple(r[c] for c in _VALUES)
            for r in latest_versions(self.versions()).to_pylist()
        }
        new_rows, changed_rows = [], []
        for i, row in enumerate(latest_versions(valid).to_pylist()):
            key = (row["provider"], row["id"])
            values = tuple(row[c] for c in _VALUES)
            if key not in current:
                new_rows.append(i)
            elif current[key] != values:
                changed_rows.append(i)
        latest = latest_versions(valid)
        new = latest.take(pa.array(new_rows, pa.int64()))
        changed = latest.take(pa.array(changed_rows, pa.int64()))
        if new.num_rows or changed.num_rows:
            self._write(FOLDER, pa.concat_tables([new, changed]))
        return Added(new, changed, rejected)

    def _not_yet_rejected(self, rejected: pa.Table) -> pa.Table:
        """The records of ``rejected`` not set aside before with the same values and reason
        (each update asks again for the same history)."""
        if rejected.num_rows == 0:
            return rejected
        columns = [*_VALUES, "reason"]
        before = {tuple(r[c] for c in columns) for r in self.rejected().to_pylist()}
        keep = [tuple(r[c] for c in columns) not in before for r in rejected.to_pylist()]
        return rejected.filter(pa.array(keep, pa.bool_()))

    def _write(self, folder: str, table: pa.Table) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{folder}/batch-{stamp}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        if not self.store.create(name, _ipc(table)):
            raise StorageError(f"{self.store.url}/{name} exists already")  # a uuid: never


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
