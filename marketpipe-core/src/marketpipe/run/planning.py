"""Partitions (symbol x session day) grouped into units of work a provider fetches in one call."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

import attrs
import numpy as np

from marketpipe.jobs.job import IngestionJob
from marketpipe.jobs.store import SqliteJobStore
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


@attrs.frozen
class JobPlan:
    """What a run of a job does: its partitions, those it skips as stored, its units."""

    total: int
    pending: int
    stored: int
    #: Committed by earlier runs of the job (a resume).
    done: int
    units: list[WorkUnit]


def _chunks(items: list[int], size: int | None) -> Iterable[list[int]]:
    if not size:
        yield items
        return
    for i in range(0, len(items), size):
        yield items[i : i + size]


def plan_job(
    store: SqliteJobStore,
    catalog: Catalog,
    series: Series,
    job: IngestionJob,
    windows: Sequence[SessionWindow],
    spec: ProviderSpec,
) -> JobPlan:
    """Plan a run of ``job`` over its session ``windows``: record the plan in the store and
    return the units of the partitions not yet committed by the job nor (unless it refreshes)
    stored complete already.

    Vectorised: a whole-market year (2.5M partitions) is a symbols x days mask, never a set of
    Python pairs, and the store keeps one row a symbol (:mod:`marketpipe.jobs.plans`)."""
    windows = sorted(windows, key=lambda w: w.day)
    by_name = {s.value: s for s in job.symbols}
    symbols = sorted(by_name)
    days = [w.day for w in windows]
    ordinals = np.array([d.toordinal() for d in days], dtype=np.int64)
    first = np.array(
        [job.symbol_starts.get(s, dt.date.min).toordinal() for s in symbols], dtype=np.int64
    )
    last = np.array(
        [job.symbol_ends.get(s, dt.date.max).toordinal() for s in symbols], dtype=np.int64
    )
    asked = (ordinals >= first[:, None]) & (ordinals <= last[:, None])
    row = {s: i for i, s in enumerate(symbols)}
    col = {d: j for j, d in enumerate(days)}

    def cells(keys: Iterable[PartitionKey]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(row[s], col[d]) for s, d in keys if s in row and d in col]
        at = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return at[:, 0], at[:, 1]

    series_key = str(series)
    gone = cells(store.deleted(series_key, symbols))
    if job.keep_deleted:
        asked[gone] = False
    else:  # an explicit ingest of deleted partitions: they belong to the dataset again
        hit = asked[gone]
        store.forget_deletions(
            series_key,
            [(symbols[i], days[j]) for i, j in zip(gone[0][hit], gone[1][hit], strict=True)],
        )
    done = np.zeros_like(asked)
    done[cells(store.completed_keys(job.job_id))] = True
    done &= asked
    stored = np.zeros_like(asked)
    if not job.refresh and len(days) and len(symbols):
        catalog.sync(series, sorted({month_key(d) for d in days}))
        stored = catalog.stored_mask(
            series, symbols, days, job.configuration.session, other_than_job=job.job_id.value
        )
        stored &= asked & ~done
    store.plan(job.job_id, symbols, ordinals, asked, stored)
    pending = asked & ~done & ~stored
    cfg = job.configuration
    units = _units(
        [by_name[s] for s in symbols], windows, pending, spec, cfg.timeframe, cfg.batch_size
    )
    return JobPlan(int(asked.sum()), int(pending.sum()), int(stored.sum()), int(done.sum()), units)


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
    symbol_list = sorted(symbols, key=lambda s: s.value)
    window_list = sorted(windows, key=lambda w: w.day)
    mask = np.array(
        [[(s.value, w.day) in pending for w in window_list] for s in symbol_list], dtype=bool
    ).reshape(len(symbol_list), len(window_list))
    return _units(symbol_list, window_list, mask, spec, timeframe, batch_size)


def _units(
    symbols: list[Symbol],
    windows: list[SessionWindow],
    pending: np.ndarray,
    spec: ProviderSpec,
    timeframe: Timeframe,
    batch_size: int,
) -> list[WorkUnit]:
    """``plan_units`` over a symbols x windows mask (both sorted)."""
    every = np.array(symbols, dtype=object)
    by_month: dict[str, list[int]] = defaultdict(list)
    for j, window in enumerate(windows):
        by_month[month_key(window.day)].append(j)
    units: list[WorkUnit] = []
    for month in sorted(by_month):
        for cols in _chunks(by_month[month], spec.max_days_per_unit):
            sub = pending[:, cols]
            rows = np.flatnonzero(sub.any(axis=1))
            if not len(rows):
                continue
            # Symbols needing the same days of this chunk travel together, groups in the order
            # of their first symbol (providers then tend to yield rows in file order already).
            groups = _same_days(sub, rows)
            for members in groups:
                need = sub[members[0]]
                unit_windows = tuple(windows[c] for c, on in zip(cols, need, strict=True) if on)
                expected = sum(_rows_per_symbol(w, timeframe) for w in unit_windows)
                bars_per_symbol = max(1, round(expected * spec.fill))
                per_unit = max(1, batch_size // bars_per_symbol)
                if spec.max_symbols_per_unit:
                    per_unit = min(per_unit, spec.max_symbols_per_unit)
                lo, hi = int(members[0]), int(members[-1]) + 1
                names = symbols[lo:hi] if hi - lo == len(members) else list(every[members])
                for i in range(0, len(names), per_unit):
                    units.append(WorkUnit(tuple(names[i : i + per_unit]), unit_windows))
    return units


#: Ticks a symbol-minute, as a unit is sized: a liquid symbol trades far more (a million
#: trades a day), most far fewer; a unit of ``batch_size`` expected rows keeps a few symbols.
TICKS_PER_MINUTE = 20


def _rows_per_symbol(window: SessionWindow, timeframe: Timeframe) -> int:
    """The rows a symbol's window is expected to hold: its bars, or its ticks (estimated)."""
    if not timeframe.is_bar:
        return window.minutes * TICKS_PER_MINUTE
    return max(1, -(-window.minutes // timeframe.minutes))


def _same_days(sub: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` of the chunk ``sub`` grouped by the days they need, in the order of each
    group's first row."""
    needs = sub[rows]
    if (needs == needs[0]).all():  # a whole market asks the same days of nearly every symbol
        return [rows]
    packed = np.packbits(needs, axis=1)
    if packed.shape[1] <= 8:  # a chunk of up to 64 days: its pattern is one integer a row
        wide = np.zeros((len(rows), 8), dtype=np.uint8)
        wide[:, : packed.shape[1]] = packed
        _, inverse = np.unique(wide.view(np.uint64).reshape(-1), return_inverse=True)
    else:
        _, inverse = np.unique(packed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = [rows[g] for g in np.split(order, bounds)]
    groups.sort(key=lambda g: int(g[0]))
    return groups
