"""Which stored provider-adjusted bars are older than the dataset's ledger.

A series the provider adjusted (``adjustment`` other than ``raw``: Alpaca's ``split``,
``dividend``, ``all``...) is right only for the actions the provider had applied when each day
was fetched. A provider applies an action once it has processed it and its ex-date has come; so
a stored partition (symbol, day), fetched on day F, is stale for an action of its kind when

- the day is before the action's ex-date (the action changes what that day's prices mean), and
- the action took effect after F (``max(process_date, ex_date) > F``), or a corrected version of
  it reached the ledger after the partition was fetched.

``mp update`` restates such symbols (re-fetches their whole stored range of that series);
``mp verify`` reports them (exit 1) and ``mp status`` marks them. Raw series are never stale:
their bars do not depend on later facts (they are adjusted at read time,
:mod:`marketpipe.dataset.read`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import attrs
import pyarrow as pa

from marketpipe.dataset.renames import companies
from marketpipe.model.actions import DIVIDEND_KINDS, SPIN_OFF, SPLIT_KINDS, describe
from marketpipe.model.calendar import NEW_YORK
from marketpipe.model.values import RAW, Series
from marketpipe.storage.catalog_queries import CatalogQueries
from marketpipe.storage.ledger import Ledger
from marketpipe.storage.location import dataset_root
from marketpipe.storage.sinks import open_catalog
from marketpipe.storage.stores import open_store

#: The action kinds each word of a provider's ``adjustment`` stands for (``all``: every one).
_WORDS = {
    "split": SPLIT_KINDS,
    "dividend": DIVIDEND_KINDS,
    "spin-off": frozenset({SPIN_OFF}),
    "all": SPLIT_KINDS | DIVIDEND_KINDS | {SPIN_OFF},
}


def adjusted_kinds(adjustment: str) -> frozenset[str]:
    """The action kinds a provider-adjusted series reflects (``split,spin-off``: both)."""
    kinds: frozenset[str] = frozenset()
    for word in adjustment.split(","):
        kinds |= _WORDS.get(word.strip(), frozenset())
    return kinds


@attrs.frozen
class Stale:
    """One symbol of an adjusted series that the ledger has overtaken."""

    symbol: str
    #: The stored sessions the actions change that were fetched before the actions were known.
    days: int
    #: What changed, one phrase an action: ``10-for-1 split, ex 2024-07-15``.
    reasons: tuple[str, ...]

    def line(self, series: Series) -> str:
        """``NVDA split series restated: 10-for-1 split, ex 2024-07-15, 124 days``."""
        return (
            f"{self.symbol} {series.adjustment} series: {'; '.join(self.reasons)}, {self.days} days"
        )


def _phrase(row: dict[str, object]) -> str:
    text = describe(row)
    return text.split(" ", 1)[1] if " " in text else text  # without the symbol


#: When, on the day an action takes effect, the provider's bars reflect it: the regular open.
EFFECT_TIME = dt.time(9, 30)


def effect_instant(day: dt.date) -> dt.datetime:
    """The instant (UTC) an action whose effective day is ``day`` is in the provider's bars."""
    return dt.datetime.combine(day, EFFECT_TIME, tzinfo=NEW_YORK).astimezone(dt.UTC)


def _known_instants(
    versions: pa.Table,
) -> dict[tuple[str, str], tuple[dict[str, object], dt.datetime]]:
    """``(provider, id) -> (latest version, the instant the provider's bars reflect it)``: when
    it took effect, or when a correction of it reached the ledger, whichever is later."""
    out: dict[tuple[str, str], tuple[dict[str, object], dt.datetime]] = {}
    for row in versions.to_pylist():  # ordered oldest first; actions are few
        key = (str(row["provider"]), str(row["id"]))
        days = [d for d in (row["process_date"], row["ex_date"]) if isinstance(d, dt.date)]
        effect = effect_instant(max(days))
        if key in out:  # a correction: known from when it was fetched
            fetched = row["fetched_at"]
            assert isinstance(fetched, dt.datetime)
            out[key] = (row, max(effect, _aware(fetched)))
        else:
            out[key] = (row, effect)
    return out


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _fetched(text: str) -> dt.datetime:
    """A catalog's fetched-at (ISO-8601 with its zone; an old one without is UTC)."""
    if not text:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    try:
        return _aware(dt.datetime.fromisoformat(text))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)


def stale_symbols(
    catalog: CatalogQueries,
    ledger: Ledger,
    series: Series,
    symbols: set[str] | None = None,
    versions: pa.Table | None = None,
) -> list[Stale]:
    """The symbols of ``series`` whose stored bars the ledger has overtaken (none for raw)."""
    if series.adjustment == RAW:
        return []
    kinds = adjusted_kinds(series.adjustment)
    if not kinds:
        return []
    versions = ledger.versions() if versions is None else versions
    names = companies(versions)
    if symbols is not None:
        symbols = set().union(*(names.get(s, {s}) for s in symbols)) if symbols else set()
    actions: dict[str, list[tuple[dict[str, object], dt.datetime]]] = defaultdict(list)
    for row, known in _known_instants(versions).values():
        if row["provider"] != series.provider or row["kind"] not in kinds:
            continue
        if row["ex_date"] is None:
            continue
        # The action's company: every name it traded under is restated.
        for name in names.get(str(row["symbol"]), {str(row["symbol"])}):
            if symbols is None or name in symbols:
                actions[name].append((row, known))
    if not actions:
        return []
    times = catalog.partition_times(series, symbols=set(actions))
    found: dict[str, tuple[set[int], dict[str, None]]] = {}
    for (symbol, day), fetched_at in times.items():
        fetched = _fetched(fetched_at)
        for row, known in actions.get(symbol, ()):
            ex = row["ex_date"]
            assert isinstance(ex, dt.date)
            if day < ex.toordinal() and known > fetched:
                days, reasons = found.setdefault(symbol, (set(), {}))
                days.add(day)
                reasons[_phrase(row)] = None
    return [
        Stale(symbol, len(days), tuple(reasons))
        for symbol, (days, reasons) in sorted(found.items())
    ]


def find_stale(data_dir: Path, series: Series, symbols: set[str] | None = None) -> list[Stale]:
    """:func:`stale_symbols` of the dataset under ``data_dir`` (its catalog and its ledger)."""
    if series.adjustment == RAW:
        return []
    ledger = Ledger(open_store(dataset_root(data_dir)))
    versions = ledger.versions()
    if versions.num_rows == 0:
        return []
    catalog = open_catalog(data_dir)
    try:
        return stale_symbols(catalog, ledger, series, symbols, versions)
    finally:
        catalog.close()
