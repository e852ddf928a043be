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
from collections.abc import Iterable, Mapping

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.actions import (
    ACTION_COLUMNS,
    ACTION_SCHEMA,
    REJECTED_ACTION_SCHEMA,
    check_actions,
)
from marketpipe.storage.layout import META_DIR
from marketpipe.storage.records import (
    SUFFIX,
    end_of,
    latest_versions,
    new_and_changed,
    read_batches,
    write_batch,
)
from marketpipe.storage.store import Store

__all__ = ["FOLDER", "REJECTED", "SUFFIX", "Added", "Ledger", "latest_versions"]

FOLDER = f"{META_DIR}/actions"
REJECTED = f"{FOLDER}/rejected"
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


class Ledger:
    """The ledger of the dataset whose files are in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _read(self, folder: str, schema: pa.Schema) -> pa.Table:
        return read_batches(self.store, folder, schema, "ledger")

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
                    pc.less(table["fetched_at"], end_of(as_of)),
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
        new, changed = new_and_changed(self.versions(), valid, _VALUES)
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
        write_batch(self.store, folder, table)
