"""One unit's bars from fetched to committed: validate, quarantine, commit, and say what each
partition became. It needs no job store and no event bus, only the sink and what the job says
about the unit (:class:`UnitContext`, a small value that can travel to another process), so the
same step runs wherever the unit runs; the coordinator records the outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import pyarrow as pa

from marketpipe.jobs.job import IngestionJob
from marketpipe.jobs.store import PartitionOutcome
from marketpipe.model import clock
from marketpipe.model.calendar import TradingCalendar
from marketpipe.model.partition import PartitionKey
from marketpipe.model.schema import encode_symbols
from marketpipe.model.values import Series, Session, Timeframe
from marketpipe.plugins.sink import CommitRequest, Sink, StagingSink
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.plugins.validator import ValidationContext, Validator, rejected_schema
from marketpipe.run.planning import WorkUnit
from marketpipe.storage.layout import month_key
from marketpipe.storage.partition_index import index_rows
from marketpipe.storage.quarantine import write_quarantine
from marketpipe.storage.store import Store
from marketpipe.storage.stores import open_store


@attrs.frozen
class UnitContext:
    """What committing a unit needs to know of its job."""

    job_id: str
    series: Series
    timeframe: Timeframe
    session: Session
    #: Staged (a refresh: published whole when the job completes), when the sink can.
    staged: bool = False

    @classmethod
    def of(cls, job: IngestionJob, series: Series) -> UnitContext:
        cfg = job.configuration
        return cls(job.job_id.value, series, cfg.timeframe, cfg.session, job.refresh)


@attrs.frozen
class UnitCommitted:
    outcomes: list[PartitionOutcome]
    #: Rows the validators rejected (in quarantine).
    rejected: int
    #: Partitions the provider sent no bars for whose stored rows were kept.
    kept: list[PartitionKey]
    #: Rows kept that are worth a note, by what they are (see ``ValidationResult.counted``).
    counted: dict[str, int] = attrs.field(factory=dict)


class UnitCommitter:
    """Validates and commits units into ``sink``; rejected rows go to quarantine in the
    ``dataset`` (its folder, or its bucket)."""

    def __init__(
        self,
        *,
        sink: Sink,
        validators: Sequence[Validator],
        spec: ProviderSpec,
        calendar: TradingCalendar,
        dataset: Path | str,
        replace_empty: bool = False,
    ) -> None:
        self._sink = sink
        self._validators = list(validators)
        self._spec = spec
        self._calendar = calendar
        self._dataset = dataset
        self._quarantine: Store | None = None
        self._replace_empty = replace_empty

    def commit(
        self,
        job: UnitContext,
        unit: WorkUnit,
        table: pa.Table,
        sources: Mapping[dt.date, str] | None = None,
    ) -> UnitCommitted:
        table = encode_symbols(table)  # once per unit: every step below reads the codes
        context = ValidationContext(
            symbols=frozenset(s.value for s in unit.symbols),
            windows=unit.windows,
            timeframe=job.timeframe,
            allow_null_prices=self._spec.null_price_bars,
        )
        rejected_parts = []
        counted: dict[str, int] = {}
        schema = rejected_schema(job.timeframe)
        for validator in self._validators:
            result = validator.validate(table, context)
            table = result.valid
            if result.rejected.num_rows:
                rejected_parts.append(result.rejected.cast(schema))
            for what, n in result.counted.items():
                counted[what] = counted.get(what, 0) + n
        rejected = pa.concat_tables(rejected_parts) if rejected_parts else schema.empty_table()
        quarantined = {}
        if rejected.num_rows:
            if self._quarantine is None:  # rejected rows are rare: the store when they come
                self._quarantine = open_store(self._dataset, durable=False)
            quarantined = write_quarantine(self._quarantine, job.job_id, rejected)
        symbols = [s.value for s in unit.symbols]
        days = [w.day for w in unit.windows]
        bars = index_rows(table, symbols, days).counts()
        rejected_counts = index_rows(rejected, symbols, days).counts()
        kept = self._kept_when_empty(job, unit, bars)
        coverage: dict[str, tuple[dt.date, ...]] = {}
        for symbol, day in unit.keys:
            if (symbol, day) not in kept:
                coverage.setdefault(symbol, ())
                coverage[symbol] += (day,)
        paths = dict(kept)
        if coverage:
            fetched = clock.now()
            delay = self._spec.data_delay
            partial: dict[str, tuple[dt.date, ...]] = {}
            for window in unit.windows:
                if not self._calendar.is_complete(window, fetched, delay):
                    for symbol in coverage:
                        if window.day in coverage[symbol]:
                            partial[symbol] = (*partial.get(symbol, ()), window.day)
            write = (
                self._sink.stage
                if job.staged and isinstance(self._sink, StagingSink)
                else self._sink.commit
            )
            paths.update(
                write(
                    CommitRequest(
                        table=table,
                        coverage=coverage,
                        provider=job.series.provider,
                        feed=job.series.feed,
                        timeframe=job.timeframe,
                        job_id=job.job_id,
                        adjustment=job.series.adjustment,
                        session=job.session,
                        partial=partial,
                        rejected=rejected_counts,
                        sources=dict(sources or {}),
                    )
                )
            )
        outcomes = [
            PartitionOutcome(
                symbol,
                day,
                bars.get((symbol, day), 0),
                rejected_counts.get((symbol, day), 0),
                paths[(symbol, day)],
                quarantined.get((symbol, day.isoformat())) if quarantined else None,
            )
            for symbol, day in unit.keys
        ]
        return UnitCommitted(outcomes, rejected.num_rows, sorted(kept), counted)

    def _kept_when_empty(
        self, job: UnitContext, unit: WorkUnit, bars: dict[PartitionKey, int]
    ) -> dict[PartitionKey, str]:
        """Partitions the provider now sends no bars for but the dataset holds: their stored
        rows are kept (a re-fetch never wipes data silently) and a note says so, unless the
        user asked to replace empty days (``--replace-empty``)."""
        empty = {key for key in unit.keys if not bars.get(key)}
        if not empty or self._replace_empty:
            return {}
        catalog = self._sink.catalog
        catalog.sync(job.series, sorted({month_key(day) for _, day in empty}))
        held = catalog.lookup(job.series, empty)
        return {(p.symbol, p.day): p.path for p in held if p.bars}
