"""What the catalog answers: which partitions are stored, where, and with how many bars.

Split from :mod:`marketpipe.storage.catalog`, which keeps the index in step with the files; these
are its read-only questions, each one query over the tables that module defines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import numpy as np

from marketpipe.model.partition import PartitionKey
from marketpipe.model.values import Series, Session
from marketpipe.storage import catalog_blocks as blocks
from marketpipe.storage import catalog_rollups as rollups
from marketpipe.storage.footer import Entry, Footer
from marketpipe.storage.holdings import Holdings

_F = TypeVar("_F", bound=Callable[..., Any])
#: Up to this many keys, ``lookup`` probes the per-partition rows; beyond, it reads blocks.
_PROBES = 2_000


def locked(method: _F) -> _F:
    """One thread at a time on the catalog's connection (commits run in worker threads)."""

    @functools.wraps(method)
    def wrapper(self: CatalogQueries, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


SESSION_RANK = {Session.REGULAR: 0, Session.EXTENDED: 1}


@attrs.frozen
class StoredPartition:
    symbol: str
    day: dt.date
    bars: int
    complete: bool
    path: str


@attrs.frozen
class CatalogFile:
    month: str
    name: str
    size: int
    mtime_ns: int
    error: str | None


class CatalogQueries:
    """The catalog's questions (mixed into :class:`~marketpipe.storage.catalog.Catalog`)."""

    root: Path
    holdings: Holdings
    _conn: sqlite3.Connection
    _lock: threading.RLock

    def _series_id(self, series: Series, create: bool = False) -> int | None:
        raise NotImplementedError

    def _ids(self, symbols: Iterable[str], create: bool) -> dict[str, int]:
        raise NotImplementedError

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _names(self, ids: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The names of symbol ``ids`` (ascending, distinct), sorted, and each id's position
        among them (-1 for the others)."""
        names: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500].tolist()
            names.update(
                (int(i), str(s))
                for i, s in self._conn.execute(
                    f"SELECT id, symbol FROM symbols WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        ordered = sorted(names, key=names.__getitem__)
        position = np.full(int(ids[-1]) + 1 if len(ids) else 0, -1, dtype=np.int32)
        position[ordered] = np.arange(len(ordered), dtype=np.int32)
        return [names[i] for i in ordered], position

    @locked
    def unreadable(self, series: Series, month: str) -> list[tuple[str, str]]:
        """Files of the month the catalog could not read: ``(name, error)``."""
        series_id = self._series_id(series)
        rows = self._conn.execute(
            "SELECT name, error FROM files WHERE series_id=? AND month=? AND error IS NOT NULL "
            "ORDER BY name",
            (series_id or -1, month),
        )
        return [(str(n), str(e)) for n, e in rows]

    @locked
    def files_of(
        self, series: Series, symbols: Iterable[str], start: dt.date, end: dt.date
    ) -> list[str]:
        """Names (relative to the data root) of the files holding any day of ``symbols`` from
        ``start`` to ``end``, in order."""
        wanted = set(symbols)
        ids = [i for s, i in self._ids(wanted, create=False).items() if s in wanted]
        series_id = self._series_id(series)
        if series_id is None or not ids:
            return []
        rows = self._conn.execute(
            "SELECT DISTINCT f.month, f.name FROM parts p JOIN files f ON f.id=p.file_id "
            f"WHERE p.series_id=? AND p.day BETWEEN ? AND ? AND p.symbol_id IN "
            f"({','.join('?' * len(ids))}) ORDER BY f.month, f.name",
            (series_id, start.toordinal(), end.toordinal(), *ids),
        ).fetchall()
        return [self.holdings.where(series, month, name) for month, name in rows]

    @locked
    def shadowed(
        self,
        series: Series,
        start: dt.date | None = None,
        end: dt.date | None = None,
        symbols: Iterable[str] | None = None,
    ) -> dict[str, set[tuple[str, int]]]:
        """``file -> {(symbol, day ordinal)}`` that a newer file holds too: a commit cut short
        between its new file and the clean-up of the old ones (or a compaction cut short) leaves
        two holders until the unit is committed again, and a published restatement holds its
        partitions beside the old files until they are rewritten. Readers skip the older holders'
        rows, so each partition reads as one committed version, the newest (fetched last, then
        recorded last: an object store's version stamps have no order)."""
        series_id = self._series_id(series)
        if series_id is None:
            return {}
        lo = start.toordinal() if start else 0
        hi = end.toordinal() if end else 2**62
        only, ids = "", []
        if symbols is not None:  # only the symbols read: a read never scans the whole series
            wanted = set(symbols)
            ids = [i for s, i in self._ids(wanted, create=False).items() if s in wanted]
            if not ids:
                return {}
            only = f" AND symbol_id IN ({','.join('?' * len(ids))})"
        rows = self._conn.execute(
            "SELECT s.symbol, p.day, f.month, f.name, f.fetched_at, f.id FROM parts p "
            "JOIN files f ON f.id=p.file_id JOIN symbols s ON s.id=p.symbol_id "
            f"WHERE p.series_id=? AND p.day BETWEEN ? AND ?{only.replace('symbol_id', 'p.symbol_id')} "
            "AND (p.symbol_id, p.day) IN ("
            f"SELECT symbol_id, day FROM parts WHERE series_id=? AND day BETWEEN ? AND ?{only} "
            "GROUP BY symbol_id, day HAVING COUNT(*) > 1)",
            (series_id, lo, hi, *ids, series_id, lo, hi, *ids),
        ).fetchall()
        holders: dict[tuple[str, int], list[tuple[str, int, str]]] = {}
        for symbol, day, month, name, fetched, file_id in rows:
            rel = self.holdings.where(series, month, name)
            holders.setdefault((str(symbol), int(day)), []).append(
                (fetched or "", int(file_id), rel)
            )
        out: dict[str, set[tuple[str, int]]] = {}
        for key, files in holders.items():
            for *_, rel in sorted(files)[:-1]:
                out.setdefault(rel, set()).add(key)
        return out

    def files_holding(self, series: Series, keys: Iterable[PartitionKey]) -> set[str]:
        """Names (relative to the data root) of the files that hold any of ``keys``."""
        return {p.path for p in self.lookup(series, keys)}

    @locked
    def lookup(self, series: Series, keys: Iterable[PartitionKey]) -> list[StoredPartition]:
        """The stored partitions among ``keys`` (complete or not), with their files."""
        series_id = self._series_id(series)
        keys = list(keys)
        if series_id is None or not keys:
            return []
        ids = self._ids((s for s, _ in keys), create=False)
        if len(keys) <= _PROBES:
            return self._probe(series, series_id, ids, keys)
        # Many keys (a whole-market day): from the blocks of the days asked, a few thousand
        # ids to decode, where probing the per-partition rows of 10,000 keys took 200 ms.
        by_day: dict[int, set[int]] = {}
        for s, d in keys:
            if s in ids:
                by_day.setdefault(d.toordinal(), set()).add(ids[s])
        if not by_day:
            return []
        files: dict[int, tuple[str, str]] = {}
        found = blocks.holding(self._conn, series_id, by_day)
        if not found:
            return []
        wanted_files = sorted({f for *_, f in found})
        for start in range(0, len(wanted_files), 500):
            chunk = wanted_files[start : start + 500]
            files.update(
                (int(i), (str(m), str(n)))
                for i, m, n in self._conn.execute(
                    f"SELECT id, month, name FROM files WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        names = {ids[s]: s for s, _ in keys if s in ids}
        out: list[StoredPartition] = []
        for day, symbol_id, bars, complete, file_id in found:
            month, name = files[file_id]
            out.append(
                StoredPartition(
                    names[symbol_id],
                    dt.date.fromordinal(day),
                    bars,
                    bool(complete),
                    self.holdings.where(series, month, name),
                )
            )
        return out

    def _probe(
        self, series: Series, series_id: int, ids: dict[str, int], keys: list[PartitionKey]
    ) -> list[StoredPartition]:
        """``lookup`` of up to a few thousand keys through the primary key: a day's symbols
        asked together, up to 500 a query (a day of an Alpaca-like dataset has a block in each
        of hundreds of files; decoding them all cost 20 ms). One query a key cost a whole
        market's unit of 345 symbols 1.3 ms."""
        by_day: dict[dt.date, list[int]] = {}
        for symbol, day in keys:
            if symbol in ids:
                by_day.setdefault(day, []).append(ids[symbol])
        found: dict[tuple[int, dt.date], list[tuple[int, int, str, str]]] = {}
        for day, symbol_ids in by_day.items():
            for start in range(0, len(symbol_ids), 500):
                chunk = symbol_ids[start : start + 500]
                for symbol_id, bars, complete, month, name in self._conn.execute(
                    "SELECT p.symbol_id, p.bars, p.complete, f.month, f.name FROM parts p "
                    "JOIN files f ON f.id=p.file_id WHERE p.series_id=? AND p.day=? AND "
                    f"p.symbol_id IN ({','.join('?' * len(chunk))})",
                    (series_id, day.toordinal(), *chunk),
                ):
                    found.setdefault((int(symbol_id), day), []).append(
                        (int(bars), int(complete), str(month), str(name))
                    )
        if not found:
            return []
        out: list[StoredPartition] = []
        for symbol, day in keys:  # in the order asked
            for bars, complete, month, name in found.get((ids.get(symbol, -1), day), ()):
                out.append(
                    StoredPartition(
                        symbol, day, bars, bool(complete), self.holdings.where(series, month, name)
                    )
                )
        return out

    @locked
    def stored_mask(
        self,
        series: Series,
        symbols: Sequence[str],
        days: Sequence[dt.date],
        session: Session = Session.REGULAR,
        other_than_job: str | None = None,
    ) -> np.ndarray:
        """``mask[i, j]``: ``symbols[i]`` on ``days[j]`` is stored complete, for ``session``
        (bars of the extended session hold the regular one's), in exactly one file.

        A partition in two files (a commit interrupted before its clean-up) is not counted as
        stored, so it is fetched and committed again, which removes the stale copy; so is one
        held by a file of ``other_than_job``, which that job has not recorded yet.
        """
        mask = np.zeros((len(symbols), len(days)), dtype=bool)
        series_id = self._series_id(series)
        if series_id is None or not len(symbols) or not len(days):
            return mask
        ordinals = np.array([d.toordinal() for d in days], dtype=np.int64)
        lo, hi = int(ordinals.min()), int(ordinals.max())
        day_pos = np.full(hi - lo + 1, -1, dtype=np.int64)
        day_pos[ordinals - lo] = np.arange(len(days))
        ids = self._ids(symbols, create=False)
        max_id = max((ids[s] for s in symbols if s in ids), default=-1)
        if max_id < 0:
            return mask
        symbol_pos = np.full(max_id + 1, -1, dtype=np.int64)
        for i, symbol in enumerate(symbols):
            if symbol in ids:
                symbol_pos[ids[symbol]] = i
        own = np.array(
            [
                int(i)
                for (i,) in self._conn.execute(
                    "SELECT id FROM files WHERE series_id=? AND job_id=?",
                    (series_id, other_than_job or ""),
                )
            ],
            dtype=np.int64,
        )
        held = blocks.read(self._conn, "blocks", series_id, lo, hi)
        ids_held = held.symbol.astype(np.int64)
        asked = ids_held <= max_id
        row = np.where(asked, symbol_pos[np.minimum(ids_held, max_id)], -1)
        col = held.per_entry(day_pos[held.block_day - lo])
        asked &= (row >= 0) & (col >= 0)
        cell = (row * len(days) + col)[asked]
        # Stored: held by exactly one file, complete for the session asked, and not by a file
        # of ``other_than_job``.
        fit = held.block_session >= SESSION_RANK[session]
        if len(own):
            fit &= ~np.isin(held.block_file, own)
        good = held.per_entry(fit) & (held.complete == 1)
        holders = np.bincount(cell, minlength=mask.size)
        fine = np.bincount(cell[good[asked]], minlength=mask.size)
        stored: np.ndarray = ((holders == 1) & (fine == 1)).reshape(mask.shape)
        return stored

    @locked
    def rollup(
        self, series: Series, thin_of: rollups.ThinOf | None, thin_key: str | None
    ) -> tuple[list[str], rollups.Rollup]:
        """Every month of ``series`` rolled up per symbol (:mod:`catalog_rollups`), months
        not rolled up yet (or with another ``thin_key``) made and kept; ``symbol`` is an index
        into the returned names (sorted)."""
        series_id = self._series_id(series)
        months = [
            str(m)
            for (m,) in self._conn.execute(
                "SELECT DISTINCT month FROM files WHERE series_id=? ORDER BY month",
                (series_id if series_id is not None else -1,),
            )
        ]

        def keep(make: Callable[[sqlite3.Connection], None]) -> None:
            with self._tx() as db:
                make(db)

        roll = rollups.read(self._conn, series_id or -1, months, thin_of, thin_key, keep=keep)
        names, position = self._names(np.unique(roll.symbol))
        roll.symbol = position[roll.symbol] if len(roll) else roll.symbol
        return names, roll

    @locked
    def partitions(self, series: Series) -> tuple[list[str], dict[str, np.ndarray]]:
        """Every stored partition of ``series``, one row per (symbol, day): ``symbol`` (an index
        into the returned names), ``day`` (ordinal), ``bars``, ``complete``, ``session`` (0
        regular, 1 extended) and ``rejected``, sorted by symbol then day."""
        series_id = self._series_id(series)
        names = {
            int(i): str(s)
            for i, s in self._conn.execute(
                "SELECT DISTINCT s.id, s.symbol FROM parts p JOIN symbols s ON s.id=p.symbol_id "
                "WHERE p.series_id=?",
                (series_id or -1,),
            )
        }
        rows = self._conn.execute(
            "SELECT symbol_id, day, MAX(bars), MIN(complete), MAX(session), MAX(rejected) "
            "FROM parts WHERE series_id=? GROUP BY symbol_id, day",
            (series_id or -1,),
        ).fetchall()
        table = np.array(rows, dtype=np.int64).reshape(-1, 6)
        ordered = sorted(names, key=lambda i: names[i])
        position = np.full(max(names, default=0) + 1, -1, dtype=np.int64)
        position[ordered] = np.arange(len(ordered))
        symbol = position[table[:, 0]] if len(table) else table[:, 0]
        order = np.lexsort((table[:, 1], symbol))
        columns = {"symbol": symbol[order]}
        for i, name in enumerate(("day", "bars", "complete", "session", "rejected"), start=1):
            columns[name] = table[order, i]
        return [names[i] for i in ordered], columns

    @locked
    def partition_times(
        self, series: Series, symbols: Iterable[str] | None = None
    ) -> dict[tuple[str, int], str]:
        """``(symbol, day ordinal) -> fetched-at`` of every stored partition (its newest file),
        or of those of ``symbols``."""
        where, args = "p.series_id=?", [self._series_id(series) or -1]
        if symbols is not None:
            wanted = set(symbols)
            ids = [i for s, i in self._ids(wanted, create=False).items() if s in wanted]
            where += f" AND p.symbol_id IN ({','.join('?' * len(ids))})" if ids else " AND 0"
            args += ids
        rows = self._conn.execute(
            "SELECT s.symbol, p.day, MAX(f.fetched_at) FROM parts p JOIN files f "
            "ON f.id=p.file_id JOIN symbols s ON s.id=p.symbol_id WHERE "
            f"{where} GROUP BY p.symbol_id, p.day",
            args,
        )
        return {(str(s), int(d)): str(t or "") for s, d, t in rows}

    def spans(self, series: Series) -> dict[str, tuple[dt.date, dt.date]]:
        """``symbol -> (first day, last day)`` stored (from the month rollups: a whole market's
        twenty years are 240 months, not 50M partitions)."""
        names, roll = self.rollup(series, None, None)
        roll = roll.take(np.flatnonzero(roll.held))
        symbol = roll.symbol.astype(np.intp)
        first = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(first, symbol, roll.first + rollups.lowest(roll.held))
        np.maximum.at(last, symbol, roll.first + rollups.highest(roll.held))
        return {
            name: (dt.date.fromordinal(int(a)), dt.date.fromordinal(int(b)))
            for name, a, b in zip(names, first.tolist(), last.tolist(), strict=True)
            if a <= b
        }

    @locked
    def files(self, series: Series) -> list[CatalogFile]:
        series_id = self._series_id(series)
        rows = self._conn.execute(
            "SELECT month, name, size, mtime_ns, error FROM files WHERE series_id=? "
            "ORDER BY month, name",
            (series_id or -1,),
        )
        return [CatalogFile(m, n, int(s), int(t), e) for m, n, s, t, e in rows]

    @locked
    def entries(self, series: Series, month: str, name: str) -> dict[tuple[str, str], int]:
        """``(symbol, ISO day) -> bars`` the catalog holds for one file."""
        series_id = self._series_id(series)
        rows = self._conn.execute(
            "SELECT s.symbol, p.day, p.bars FROM files f JOIN parts p ON p.file_id=f.id "
            "JOIN symbols s ON s.id=p.symbol_id WHERE f.series_id=? AND f.month=? AND f.name=?",
            (series_id or -1, month, name),
        )
        return {(str(s), dt.date.fromordinal(d).isoformat()): int(b) for s, d, b in rows}

    @locked
    def footer(self, series: Series, month: str, name: str) -> Footer:
        """What the catalog holds for one group (a file): its partitions, job and fetched-at."""
        series_id = self._series_id(series)
        head = self._conn.execute(
            "SELECT id, job_id, fetched_at FROM files WHERE series_id=? AND month=? AND name=?",
            (series_id or -1, month, name),
        ).fetchone()
        if head is None:
            return Footer({})
        rows = self._conn.execute(
            "SELECT s.symbol, p.day, p.bars, p.complete, p.rejected, p.session FROM parts p "
            "JOIN symbols s ON s.id=p.symbol_id WHERE p.file_id=?",
            (head[0],),
        ).fetchall()
        session = next(
            (s for s, rank in SESSION_RANK.items() if rows and rank == rows[0][5]),
            Session.REGULAR,
        )
        entries = {
            (str(sym), dt.date.fromordinal(day).isoformat()): Entry(int(b), bool(c), int(r))
            for sym, day, b, c, r, _ in rows
        }
        sources = {
            dt.date.fromordinal(day).isoformat(): str(version)
            for day, version in self._conn.execute(
                "SELECT day, version FROM sources WHERE file_id=?", (head[0],)
            )
        }
        return Footer(entries, session, str(head[1] or ""), str(head[2] or ""), sources)

    @locked
    def symbols_on(self, series: Series, day: dt.date, *, with_bars: bool = False) -> list[str]:
        """The symbols with a stored partition of ``series`` on ``day`` (``with_bars``: only
        those with bars, what traded)."""
        ordinal = day.toordinal()
        held = blocks.read(self._conn, "blocks", self._series_id(series) or -1, ordinal, ordinal)
        ids = held.symbol[held.bars > 0] if with_bars else held.symbol
        names, _ = self._names(np.unique(ids))
        return names

    @locked
    def source_versions(self, series: Series) -> dict[dt.date, set[str]]:
        """Each stored day's source versions (one per file holding a part of it, usually one
        in all); a day whose files recorded none is left out."""
        rows = self._conn.execute(
            "SELECT DISTINCT s.day, s.version FROM sources s JOIN files f ON f.id=s.file_id "
            "WHERE f.series_id=? AND EXISTS (SELECT 1 FROM parts p WHERE p.file_id=s.file_id "
            "AND p.day=s.day)",
            (self._series_id(series) or -1,),
        )
        out: dict[dt.date, set[str]] = {}
        for day, version in rows:
            out.setdefault(dt.date.fromordinal(day), set()).add(str(version))
        return out
