"""``mp actions``: the dataset's ledger of corporate actions, listed or filled."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model import clock
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import RAW
from marketpipe.plugins.registry import PreparedProvider, prepare_provider
from marketpipe.run.actions import refuse_by_prices
from marketpipe.run.pipeline import last_completed_session
from marketpipe.storage.ledger import Added, Ledger
from marketpipe.storage.location import dataset_root, local_root
from marketpipe.storage.sinks import choose_sink, open_sink
from marketpipe.storage.stores import open_store

COLUMNS = ("provider", "id", "kind", "symbol", "new_symbol", "ex_date", "process_date",
           "old_rate", "new_rate", "rate", "fetched_at")  # fmt: skip


def _ledger(data_dir: Path | str, *, must_exist: bool = True) -> Ledger:
    root = local_root(data_dir)
    if must_exist and not root.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    return Ledger(open_store(dataset_root(root)))


def _rows(table: pa.Table, extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.select([*COLUMNS, *extra]).to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.date | dt.datetime):
                row[key] = value.isoformat()
    return rows


def list_actions(
    data_dir: Path | str,
    *,
    provider: str | None = None,
    symbols: Sequence[str] | None = None,
    as_of: dt.date | None = None,
    rejected: bool = False,
) -> list[dict[str, Any]]:
    """The ledger's latest version of each action (as of a day), or the records set aside."""
    ledger = _ledger(data_dir)
    if rejected:
        return _rows(ledger.rejected(), ("reason",))
    return _rows(ledger.actions(as_of=as_of, provider=provider, symbols=symbols))


def fetch_actions(
    data_dir: Path | str,
    provider: str,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date | None = None,
    overrides: dict[str, str] | None = None,
) -> dict[str, int]:
    """Ask ``provider`` for the actions of ``symbols`` and keep them, without fetching bars."""
    if not symbols:
        raise InvalidInputError("give the symbols whose actions to fetch: --symbols A,B")
    prepared = prepare_provider(provider, overrides or {})
    try:
        added = refresh_ledger(data_dir, prepared, symbols, start, end)
    finally:
        prepared.provider.close()
    if added is None:
        raise InvalidInputError(f"provider {prepared.spec.name} reports no corporate actions")
    return {
        "new": added.new.num_rows,
        "corrected": added.changed.num_rows,
        "rejected": added.rejected.num_rows,
    }


def refresh_ledger(
    data_dir: Path | str,
    prepared: PreparedProvider,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date | None = None,
) -> Added | None:
    """Ask ``prepared``'s provider for the actions of ``symbols`` from ``start`` to ``end``
    (today) and keep them in the dataset's ledger; the job store remembers the refresh (a job
    then does not ask again this session). ``None``: the provider reports no actions."""
    table = prepared.provider.fetch_actions(list(symbols), start, end or clock.now().date())
    if table is None:
        return None
    root = local_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    ledger = _ledger(data_dir, must_exist=False)
    refused: dict[tuple[str, str], str] = {}
    if choose_sink(root).new is False:  # bars stored: dividends are checked against them
        sink = open_sink(root, writing=False)
        try:
            for series in sink.catalog.series():
                if series.provider == prepared.spec.name and series.adjustment == RAW:
                    refused.update(refuse_by_prices(table, sink, series, ledger))
        finally:
            sink.close()
    added = ledger.add(table, refused)
    store = SqliteJobStore.for_data_dir(root)
    try:
        session = last_completed_session(prepared.spec.name)
        store.mark_refreshed(prepared.spec.name, symbols, session, start)
    finally:
        store.close()
    return added
