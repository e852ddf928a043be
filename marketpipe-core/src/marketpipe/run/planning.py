"""Partitions (symbol x session day) grouped into units of work a provider fetches in one call."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

import attrs
import numpy as np

from marketpipe.jobs.job import IngestionJob
from marketpipe.model.calendar import SessionWindow
from marketpipe.model.partition import PartitionKey
from marketpipe.model.values import Series, Symbol, Timeframe
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.layout import month_key


@attrs.frozen
class WorkUnit:
    """Symbols x days fetched, validated and committed together."""

    symbols: tuple[Symbol, ...]
    windows: tuple[SessionWindow, ...]

    @property
    def keys(self) -> list[PartitionKey]:
        return [(s.value, w.day) for s in self.symbols for w in self.windows]


def _chunks(items: list[SessionWindow], size: int | None) -> Iterable[list[SessionWindow]]:
    if not size:
        yield items
        return
    for i in range(0, len(items), size):
        yield items[i : i + size]


def plan_units(
    symbols: Iterable[Symbol],
    windows: Iterable[SessionWindow],
    pending: set[PartitionKey],
    spec: ProviderSpec,
    timeframe: Timeframe,
    batch_size: int,
) -> list[WorkUnit]:
    """Units covering every pending partition, each within one month (one file per unit).

    A unit holds at most about ``batch_size`` bars, so memory stays flat however large the job;
    the provider's ``max_symbols_per_unit`` and ``max_days_per_unit`` are respected.
    """
    by_month: dict[str, list[SessionWindow]] = defaultdict(list)
    for window in sorted(windows, key=lambda w: w.day):
        by_month[month_key(window.day)].append(window)
    symbol_list = sorted(symbols)  # providers then tend to yield rows in file order already
    units: list[WorkUnit] = []
    for month in sorted(by_month):
        for days in _chunks(by_month[month], spec.max_days_per_unit):
            # Symbols needing the same days of this chunk travel together.
            groups: dict[tuple[dt.date, ...], list[Symbol]] = defaultdict(list)
            for symbol in symbol_list:
                need = tuple(w.day for w in days if (symbol.value, w.day) in pending)
                if need:
                    groups[need].append(symbol)
            for need, members in groups.items():
                unit_windows = tuple(w for w in days if w.day in need)
                bars_per_symbol = sum(
                    max(1, -(-w.minutes // timeframe.minutes)) for w in unit_windows
                )
                per_unit = max(1, batch_size // bars_per_symbol)
                if spec.max_symbols_per_unit:
                    per_unit = min(per_unit, spec.max_symbols_per_unit)
                for i in range(0, len(members), per_unit):
                    units.append(WorkUnit(tuple(members[i : i + per_unit]), unit_windows))
    return units


def stored_keys(
    catalog: Catalog, series: Series, job: IngestionJob, windows: Sequence[SessionWindow]
) -> set[PartitionKey]:
    """The job's partitions ``series`` holds complete (asked of the catalog, synced with the
    month folders first): what a job that is not a refresh leaves alone."""
    catalog.sync(series, sorted({month_key(w.day) for w in windows}))
    symbols = [s.value for s in job.symbols]
    days = [w.day for w in windows]
    mask = catalog.stored_mask(
        series, symbols, days, job.configuration.session, other_than_job=job.job_id.value
    )
    rows, cols = np.nonzero(mask)
    found = {(symbols[r], days[c]) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}
    if job.symbol_starts or job.symbol_ends:
        found = {
            (s, d)
            for s, d in found
            if job.symbol_starts.get(s, d) <= d <= job.symbol_ends.get(s, d)
        }
    return found
