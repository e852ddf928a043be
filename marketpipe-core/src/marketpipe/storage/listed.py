"""The catalog of a sink that only lists what it holds (:class:`~marketpipe.plugins.sink.ListingSink`).

A sink plugin writes, reads and lists its partitions (``held(series)``); core keeps the catalog:
:class:`ListedHoldings` shows the listing to the catalog as its groups (one per place a partition
is, ``Held.where``, each with a version stamp computed from what it holds), and
:class:`CatalogedSink` syncs the catalog from it after each commit. So the questions the pipeline
asks (which partitions are stored complete, which rows a re-fetch would wipe) are answered for any
sink, and a sink author writes none of the catalog's protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from marketpipe.model.errors import StorageError
from marketpipe.model.partition import PartitionKey
from marketpipe.model.values import Series
from marketpipe.plugins.sink import CommitRequest, Held, ListingSink, Sink
from marketpipe.plugins.specs import SinkSpec
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.footer import Entry, Footer
from marketpipe.storage.layout import month_key, series_prefix
from marketpipe.storage.location import local_root
from marketpipe.storage.store import Listing

Groups = dict[str, dict[str, list[Held]]]  # month -> where -> partitions


def _stamp(held: list[Held]) -> int:
    """A version stamp of what one place holds: changes whenever any of its partitions does."""
    text = "\n".join(
        f"{h.symbol}|{h.day}|{h.bars}|{h.complete}|{h.rejected}|{h.job_id}|{h.fetched_at}"
        for h in sorted(held, key=lambda h: (h.symbol, h.day))
    )
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "big")


class ListedHoldings:
    """:class:`~marketpipe.storage.holdings.Holdings` read from a sink's own listing. Within a
    month's sync (under :meth:`lock`) the sink is listed once."""

    def __init__(self, sink: ListingSink, url: str) -> None:
        self.sink = sink
        self.url = url
        self._lock = threading.RLock()
        self._cached: dict[Series, Groups] = {}
        self._syncing = 0

    def _groups(self, series: Series) -> Groups:
        if self._syncing and series in self._cached:
            return self._cached[series]
        groups: Groups = {}
        try:
            for held in self.sink.held(series):
                groups.setdefault(month_key(held.day), {}).setdefault(held.where, []).append(held)
        except Exception as exc:
            raise StorageError(f"the sink could not list {series} in {self.url}: {exc}") from exc
        if self._syncing:
            self._cached[series] = groups
        return groups

    def series(self) -> list[Series]:
        return sorted(set(self.sink.series()), key=str)

    def months(self, series: Series) -> list[str]:
        return sorted(self._groups(series))

    def listing(self, series: Series, month: str) -> Listing:
        groups = self._groups(series).get(month, {})
        return {where: (sum(h.bars for h in held), _stamp(held)) for where, held in groups.items()}

    def footer(self, series: Series, month: str, name: str) -> Footer:
        held = self._groups(series).get(month, {}).get(name)
        if held is None:
            raise StorageError(f"{self.url}/{name} is no longer held")
        entries = {
            (h.symbol, h.day.isoformat()): Entry(h.bars, h.complete, h.rejected) for h in held
        }
        return Footer(entries, job_id=held[0].job_id, fetched_at=held[0].fetched_at)

    def stat(self, series: Series, month: str, name: str) -> tuple[int, int]:
        return self.listing(series, month).get(name, (0, 0))

    @contextlib.contextmanager
    def lock(self, series: Series, month: str) -> Iterator[None]:
        with self._lock:
            self._syncing += 1
            self._cached.pop(series, None)  # each sync lists afresh
            try:
                yield
            finally:
                self._syncing -= 1
                if not self._syncing:
                    self._cached.clear()

    def where(self, series: Series, month: str, name: str) -> str:
        return name

    def prefix(self, series: Series) -> str:
        return series_prefix(series)


class CatalogedSink:
    """A :class:`~marketpipe.plugins.sink.ListingSink` with the catalog core keeps for it: what
    the pipeline uses as the dataset's :class:`~marketpipe.plugins.sink.Sink`. The sink's
    optional capabilities (``delete``, ``months``/``compact``, ``verify``) pass through; a
    delete syncs the catalog too."""

    def __init__(self, sink: ListingSink, root: Path | str) -> None:
        self._sink = sink
        where = local_root(root)
        self.holdings = ListedHoldings(sink, str(root))
        self.catalog = Catalog(where, self.holdings)
        if hasattr(sink, "delete"):
            self.delete = self._delete

    def commit(self, request: CommitRequest) -> dict[PartitionKey, str]:
        paths = dict(self._sink.commit(request))
        days = {d for ds in request.coverage.values() for d in ds}
        self.catalog.sync(request.series, sorted({month_key(d) for d in days}))
        return paths

    def read(self, series: Series) -> pa.Table:
        return self._sink.read(series)

    def _delete(self, series: Series, keys: set[PartitionKey]) -> int:
        removed = int(self._sink.delete(series, keys))  # type: ignore[attr-defined]
        self.catalog.sync(series, sorted({month_key(d) for _, d in keys}))
        return removed

    def close(self) -> None:
        try:
            self.catalog.close()
        finally:
            self._sink.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


def build_sink(spec: SinkSpec, root: Path | str, settings: Mapping[str, Any]) -> Sink:
    """The sink ``spec`` builds for the dataset at ``root``, with core's catalog when it keeps
    none of its own."""
    sink = spec.factory(root, settings)
    if hasattr(sink, "catalog"):
        return sink  # type: ignore[return-value]
    missing = [m for m in ("commit", "read", "series", "held", "close") if not hasattr(sink, m)]
    if missing:
        raise StorageError(
            f"sink {spec.name} has no {', '.join(missing)}: a sink writes (commit), "
            "reads (read) and lists what it holds (series, held), see docs/plugins.md"
        )
    return CatalogedSink(sink, root)  # type: ignore[arg-type]
