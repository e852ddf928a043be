"""Where the catalog learns what a dataset holds: its sink's storage, seen as groups of partitions.

The catalog (:mod:`marketpipe.storage.catalog`) mirrors, per series and month, named groups of
(symbol, day) partitions, each with a version stamp: when a stamp changes, the group's
:class:`~marketpipe.storage.footer.Footer` is read again; a group that is gone takes its
partitions with it. For the Parquet sink a group is a bar file and its footer is the file's own
(:class:`FileHoldings`); another sink says what its groups are (the Delta sink: the partitions one
job committed into a month, from its coverage table).
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from marketpipe.model.values import Series
from marketpipe.storage.footer import Footer, read_footer
from marketpipe.storage.layout import STAGING, month_of, month_prefix, series_in, series_prefix
from marketpipe.storage.store import STAGED, Listing, Store


class Holdings(Protocol):
    """What a catalog asks of a dataset's storage."""

    #: Where the dataset lives (a path or URL), for messages.
    url: str

    def series(self) -> list[Series]:
        """The series the storage holds anything of."""
        ...

    def months(self, series: Series) -> list[str]:
        """The months (``YYYY-MM``) the series has stored, in order."""
        ...

    def listing(self, series: Series, month: str) -> Listing:
        """``group name -> (size, version stamp)`` of one month of the series."""
        ...

    def footer(self, series: Series, month: str, name: str) -> Footer:
        """The partitions a group holds; a :class:`~marketpipe.model.errors.StorageError` when it
        cannot be read."""
        ...

    def stat(self, series: Series, month: str, name: str) -> tuple[int, int]: ...

    # Optional: ``staged_jobs() -> list[str]``, the jobs whose commits are staged and not yet
    # published (a sink that stages: :class:`~marketpipe.plugins.sink.StagingSink`).

    def lock(self, series: Series, month: str) -> contextlib.AbstractContextManager[None]:
        """Held while a month is synced, so no commit into it is seen half done."""
        ...

    def where(self, series: Series, month: str, name: str) -> str:
        """Where a group's rows are, relative to the dataset root (job records keep it)."""
        ...

    def prefix(self, series: Series) -> str:
        """The path every ``where`` of the series starts with (followed by ``/``)."""
        ...


class FileHoldings:
    """The Parquet layout's holdings: each bar file is a group, its footer says what it holds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url

    def series(self) -> list[Series]:
        return series_in(self.store.children)

    def months(self, series: Series) -> list[str]:
        names = self.store.children(series_prefix(series))
        return [m for name in names if (m := month_of(name)) is not None]

    def listing(self, series: Series, month: str) -> Listing:
        return self.store.listing(month_prefix(series, month))

    def footer(self, series: Series, month: str, name: str) -> Footer:
        return read_footer(self.store, self.where(series, month, name))

    def stat(self, series: Series, month: str, name: str) -> tuple[int, int]:
        return self.store.stat(self.where(series, month, name))

    def staged_jobs(self) -> list[str]:
        return sorted(n.removesuffix(STAGED) for n in self.store.listing(STAGING, suffix=STAGED))

    def lock(self, series: Series, month: str) -> contextlib.AbstractContextManager[None]:
        return self.store.lock(month_prefix(series, month))

    def where(self, series: Series, month: str, name: str) -> str:
        return f"{month_prefix(series, month)}/{name}"

    def prefix(self, series: Series) -> str:
        return series_prefix(series)
