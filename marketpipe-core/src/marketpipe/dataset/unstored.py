"""What was asked and never stored: the partitions of a series that its jobs were asked for and
that failed, were left pending by a deadline, or were interrupted, and no later job stored.

They belong to the dataset's plan: ``mp update`` fetches them (a symbol whose every partition
failed would otherwise fall out of every later night, having no bars to extend) and
``mp status`` shows them. A job cancelled by a person is not part of the plan.
"""

from __future__ import annotations

import datetime as dt

import attrs

from marketpipe.jobs.job import IngestionJob
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.errors import UserError
from marketpipe.model.values import Series
from marketpipe.plugins import registry
from marketpipe.storage.catalog_queries import CatalogQueries


@attrs.frozen
class Unstored:
    """One symbol's partitions asked for and not stored."""

    symbol: str
    days: int
    first_day: dt.date
    last_day: dt.date
    #: The newest job that asked for them, and the first error it recorded.
    job_id: str
    error: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "days": self.days,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "job_id": self.job_id,
            "error": self.error,
        }


def jobs_by_series(store: SqliteJobStore) -> dict[Series, list[IngestionJob]]:
    """The jobs of each series, newest first; a job whose provider is no longer installed is
    left out."""
    out: dict[Series, list[IngestionJob]] = {}
    for job in store.list_jobs():
        cfg = job.configuration
        try:
            series = registry.get(cfg.provider).series(cfg.feed, cfg.timeframe, cfg.settings)
        except UserError:
            continue
        out.setdefault(series, []).append(job)
    return out


def unstored(
    store: SqliteJobStore,
    catalog: CatalogQueries,
    series: Series,
    jobs: list[IngestionJob],
) -> tuple[Unstored, ...]:
    """The symbols of ``series`` with partitions ``jobs`` asked for and nobody stored."""
    rows = store.unstored(j.job_id.value for j in jobs)  # newest job first
    if not rows:
        return ()
    held = catalog.partition_times(series, symbols={s for s, _, _, _ in rows})
    found: dict[str, tuple[set[dt.date], str, str | None]] = {}
    for symbol, day, job_id, error in rows:
        if (symbol, day.toordinal()) in held:
            continue
        days, first_job, first_error = found.setdefault(symbol, (set(), job_id, error))
        days.add(day)
        if first_error is None and error:
            found[symbol] = (days, first_job, error)
    return tuple(
        Unstored(symbol, len(days), min(days), max(days), job_id, error)
        for symbol, (days, job_id, error) in sorted(found.items())
    )
