"""What a storage sink receives and returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs
import pyarrow as pa

from marketpipe.model.partition import PartitionKey
from marketpipe.model.values import RAW, Series, Session, Timeframe

if TYPE_CHECKING:
    from marketpipe.storage.catalog import Catalog
    from marketpipe.storage.verify import VerifyReport


@attrs.frozen(kw_only=True)
class CommitRequest:
    """Validated bars of one unit, and the partitions (symbol -> days) they replace.

    Every (symbol, day) in ``coverage`` is replaced, also those with no rows in ``table``: a day
    re-ingested with fewer bars must not keep stale ones. ``partial`` lists the covered days that
    were not final when fetched (the session had not ended, or the provider's delay had not
    passed); the catalog keeps them for the next run to fetch again.
    """

    table: pa.Table
    coverage: Mapping[str, tuple[dt.date, ...]]
    provider: str
    feed: str
    timeframe: Timeframe
    job_id: str
    adjustment: str = RAW
    session: Session = Session.REGULAR
    partial: Mapping[str, tuple[dt.date, ...]] = attrs.field(factory=dict)
    #: Rows of each (symbol, day) the validators rejected (recorded with the partition).
    rejected: Mapping[PartitionKey, int] = attrs.field(factory=dict)
    #: More ``marketpipe.*`` footer keys (a derived series' provenance).
    extra_metadata: Mapping[str, str] = attrs.field(factory=dict)
    #: The version of each covered day's source (a republishable file's ETag and size), kept
    #: with the partitions so ``mp update`` sees a day whose source was replaced; may be empty.
    sources: Mapping[dt.date, str] = attrs.field(factory=dict)

    @property
    def series(self) -> Series:
        return Series(self.provider, self.feed, self.adjustment, self.timeframe)


class Sink(Protocol):
    """What the pipeline asks of a storage sink (``marketpipe.testing.check_sink`` checks it)."""

    #: What the dataset holds, kept in step with the sink's commits.
    catalog: Catalog

    def commit(self, request: CommitRequest) -> dict[PartitionKey, str]:
        """Commit atomically; return each covered partition's file, relative to the data root."""
        ...

    def read(self, series: Series) -> pa.Table:
        """Every stored row of ``series`` (the canonical columns), ordered by symbol and time."""
        ...

    def close(self) -> None: ...


@attrs.frozen
class Held:
    """One (symbol, day) partition a sink holds, as a :class:`ListingSink` lists it."""

    symbol: str
    day: dt.date
    bars: int
    #: Where its rows are, relative to the dataset root: what ``commit`` returned for it.
    where: str
    #: ``False`` for a day that was not final when fetched (``CommitRequest.partial``).
    complete: bool = True
    rejected: int = 0
    job_id: str = ""
    fetched_at: str = ""


class ListingSink(Protocol):
    """The least a sink does: write (replacing what a commit covers), read, and list what it
    holds. Core keeps the catalog of such a sink itself (built from :meth:`held`), so a new
    sink needs nothing else; :class:`Sink` is what core makes of it."""

    def commit(self, request: CommitRequest) -> Mapping[PartitionKey, str]:
        """Commit atomically, replacing exactly the covered partitions (also those with no
        rows); refuse rows outside the coverage; return where each covered partition is."""
        ...

    def read(self, series: Series) -> pa.Table:
        """Every stored row of ``series`` (the canonical columns)."""
        ...

    def series(self) -> Iterable[Series]:
        """The series the sink holds anything of."""
        ...

    def held(self, series: Series) -> Iterable[Held]:
        """Every partition of ``series`` the sink holds, with its bar count."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class DeletingSink(Sink, Protocol):
    """A sink that can remove stored partitions (``mp delete``)."""

    def delete(self, series: Series, keys: set[PartitionKey]) -> int:
        """Remove the rows of ``keys`` (symbol, day); returns how many rows went."""
        ...


@attrs.frozen
class FolderResult:
    """What compacting one month of a series did (or, on a dry run, would do)."""

    series: Series
    month: str
    files_before: int
    files_after: int
    rows: int
    duplicates_dropped: int = 0

    @property
    def changed(self) -> bool:
        return self.files_before != self.files_after or self.duplicates_dropped > 0


@runtime_checkable
class CompactingSink(Sink, Protocol):
    """A sink that can rewrite a month of a series into fewer files (``mp compact``)."""

    def months(self, series: Series) -> list[str]:
        """The months (``YYYY-MM``) the series has stored, in order."""
        ...

    def compact(self, series: Series, month: str, dry_run: bool = False) -> FolderResult: ...


#: ``completed_at(path)``: the (job id, symbol, day, bars) the job store counts complete there.
CompletedAt = Callable[[str], list[tuple[str, str, dt.date, int]]]


@runtime_checkable
class StagingSink(Sink, Protocol):
    """A sink that can hold a job's commits out of every reader's sight and publish them
    together: a refresh (a restatement by ``mp update``) is then seen whole or not at all."""

    def stage(self, request: CommitRequest) -> dict[PartitionKey, str]:
        """Write the request's rows where no reader sees them yet; return where each covered
        partition will be once published."""
        ...

    def publish(self, series: Series, job_id: str) -> int:
        """Make every staged commit of ``job_id`` in ``series`` visible at once, replacing what
        they cover (a reader sees the old rows or the new, never a mix); drop what other jobs
        staged and never published. Idempotent: run again after a crash, it finishes the work.
        Returns the number of files published."""
        ...


@runtime_checkable
class VerifyingSink(Sink, Protocol):
    """A sink that can check what it stored against the catalog and the job store
    (``mp verify``)."""

    def verify(self, job_paths: Iterable[str], completed_at: CompletedAt) -> VerifyReport:
        """Check every series; ``job_paths`` are the paths the job store records completed
        partitions at (as ``commit`` returned them). The catalog is synced afterwards."""
        ...
