"""``marketpipe.universe``: which symbols existed on a day, under their names of that day,
delisted ones included (no survivorship bias).

Three facts are joined: the instrument master (what the provider lists, with listing dates where
it knows them; ``mp symbols --fetch``), the ledger's renames (an instrument listed today as NEWCO
was OLDCO before its rename) and, for a dataset that holds the whole market, the catalog (which
symbols have bars that day). An instrument is listed on a day when its first and last listed
days (where known) enclose it; an inactive one whose last day the provider does not say counts
only on the days the dataset holds bars of it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from marketpipe.dataset.renames import Renames, earlier_names, renames
from marketpipe.model import clock
from marketpipe.model.calendar import NEW_YORK
from marketpipe.model.errors import InvalidInputError
from marketpipe.storage.instruments import InstrumentMaster
from marketpipe.storage.ledger import Ledger
from marketpipe.storage.location import dataset_root, local_root
from marketpipe.storage.sinks import open_catalog
from marketpipe.storage.stores import open_store

UNIVERSE_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string()),  # the name on the day asked
        pa.field("current_symbol", pa.string()),
        pa.field("name", pa.string()),
        pa.field("type", pa.string()),
        pa.field("primary_exchange", pa.string()),
        pa.field("active", pa.bool_()),  # listed now, as the provider last said
        pa.field("first_day", pa.date32()),
        pa.field("last_day", pa.date32()),
        pa.field("traded", pa.bool_()),  # bars stored that day (null: none stored that day)
        pa.field("figi", pa.string()),
        pa.field("cik", pa.string()),
        pa.field("id", pa.string()),
    ]
)


def name_on(symbol: str, day: dt.date, links: Renames) -> str:
    """The name ``symbol``'s company traded under on ``day``."""
    for old, next_starts in earlier_names(symbol, links):
        if day < next_starts:
            return old
    return symbol


def stored_providers(data_dir: Path | str) -> list[str]:
    """The providers whose data the dataset holds (any kind, any series)."""
    catalog = open_catalog(local_root(data_dir))
    try:
        catalog.sync_all()
        return sorted({series.provider for series in catalog.series()})
    finally:
        catalog.close()


def _traded(root: Path, provider: str, day: dt.date) -> set[str] | None:
    catalog = open_catalog(root)
    try:
        catalog.sync_all()
        found: set[str] | None = None
        for series in catalog.series():
            if series.provider != provider:
                continue
            stored = catalog.symbols_on(series, day)
            if stored:
                found = (found or set()) | set(catalog.symbols_on(series, day, with_bars=True))
        return found
    finally:
        catalog.close()


def universe(
    data_dir: Path | str,
    *,
    provider: str,
    as_of: dt.date | str | None = None,
    traded: bool = False,
) -> pa.Table:
    """The symbols ``provider`` listed on ``as_of`` (default: today, New York), under their
    names of that day, delisted ones included, in :data:`UNIVERSE_SCHEMA`, by symbol.
    ``traded``: only those the dataset holds bars of that day (a whole-market dataset's
    universe: listed and traded)."""
    day = _day(as_of)
    root = local_root(data_dir)
    if not root.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    store = open_store(dataset_root(root))
    known = InstrumentMaster(store).instruments(provider=provider)
    links = renames(Ledger(store).actions())
    traded_names = _traded(root, provider, day)
    if known.num_rows == 0 and traded_names is None:
        raise InvalidInputError(
            f"the dataset knows no instruments of {provider} and holds none of its data on "
            f"{day}: fetch its list first (mp symbols --provider {provider} --fetch)"
        )
    rows = []
    seen: set[str] = set()
    for item in known.to_pylist():
        first, last = item["first_day"], item["last_day"]
        name = name_on(item["symbol"], day, links)
        did_trade = None if traded_names is None else name in traded_names
        if (first and day < first) or (last and day > last):
            continue
        if not item["active"] and last is None and not did_trade:
            continue  # delisted on an unknown day: only the days it traded tell
        seen.add(name)
        rows.append({**item, "current_symbol": item["symbol"], "symbol": name,
                     "traded": did_trade})  # fmt: skip
    for name in sorted((traded_names or set()) - seen):  # traded, but not in the master
        rows.append({"symbol": name, "current_symbol": name, "traded": True})
    if traded:
        rows = [row for row in rows if row["traded"]]
    table = pa.Table.from_pylist(
        [{f: row.get(f) for f in UNIVERSE_SCHEMA.names} for row in rows], schema=UNIVERSE_SCHEMA
    )
    return table.sort_by([("symbol", "ascending")])


def _day(value: dt.date | str | None) -> dt.date:
    if value is None:
        return clock.now().astimezone(NEW_YORK).date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInputError(f"as_of must be a date (YYYY-MM-DD), got {value!r}") from None


def fetch_instruments(
    data_dir: Path | str, provider: str, overrides: dict[str, str] | None = None
) -> dict[str, object]:
    """Ask ``provider`` for every instrument it lists (active and delisted) and keep them in
    the dataset's instrument master; what was new, changed, or left out (with reasons)."""
    from marketpipe.plugins.registry import prepare_provider

    prepared = prepare_provider(provider, overrides or {})
    try:
        table = prepared.provider.fetch_instruments()
    finally:
        prepared.provider.close()
    if table is None:
        raise InvalidInputError(f"provider {prepared.spec.name} has no list of instruments")
    root = local_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    kept = InstrumentMaster(open_store(dataset_root(root))).add(table)
    return {"new": kept.new, "changed": kept.changed, "left_out": list(kept.refused)}


def known_instruments(data_dir: Path | str, provider: str | None) -> pa.Table:
    """Every instrument the master holds (latest versions), delisted ones included."""
    root = local_root(data_dir)
    if not root.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    return InstrumentMaster(open_store(dataset_root(root))).instruments(provider=provider)
