"""The dataset's instrument master: what each provider says it lists, kept through the
dataset's own storage under ``_marketpipe/instruments/``, versioned as the ledger of corporate
actions is (:mod:`marketpipe.storage.records`): an instrument delisted or renamed since is a
newer version of the same (provider, id), and the older versions stay readable."""

from __future__ import annotations

import datetime as dt

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.instruments import INSTRUMENT_SCHEMA, INSTRUMENT_VALUES, check_instruments
from marketpipe.storage.layout import META_DIR
from marketpipe.storage.records import (
    end_of,
    latest_versions,
    new_and_changed,
    read_batches,
    write_batch,
)
from marketpipe.storage.store import Store

FOLDER = f"{META_DIR}/instruments"


@attrs.frozen
class Kept:
    new: int
    changed: int
    refused: tuple[str, ...]


class InstrumentMaster:
    """The instrument master of the dataset whose files are in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def versions(self) -> pa.Table:
        """Every version of every instrument, oldest first."""
        table = read_batches(self.store, FOLDER, INSTRUMENT_SCHEMA, "instrument master")
        return table.sort_by([("fetched_at", "ascending")])

    def instruments(
        self, *, provider: str | None = None, known_on: dt.date | None = None
    ) -> pa.Table:
        """The latest version of each instrument (fetched by the end of ``known_on``), of one
        provider or all, ordered by symbol."""
        table = self.versions()
        if known_on is not None:
            table = table.filter(pc.less(table["fetched_at"], end_of(known_on)))
        if provider is not None:
            table = table.filter(pc.equal(table["provider"], provider))
        return latest_versions(table).sort_by([("symbol", "ascending"), ("id", "ascending")])

    def add(self, table: pa.Table) -> Kept:
        """Keep ``table``'s instruments: those new to the master or changed since its latest
        version, in one new file; records that make no sense are left out with a reason."""
        valid, refused = check_instruments(table)
        new, changed = new_and_changed(self.versions(), valid, INSTRUMENT_VALUES)
        if new.num_rows or changed.num_rows:
            write_batch(self.store, FOLDER, pa.concat_tables([new, changed]))
        return Kept(new.num_rows, changed.num_rows, tuple(refused))
