"""The catalog: an index of what the dataset's files hold, per series, symbol and session day.

The committed files are the truth; the catalog (``<root>/_marketpipe/catalog.sqlite``) mirrors
their footers (bars, complete or partial, file, job, fetched-at). It is updated after the files of
a commit are in place, so it is never ahead of them, and each month folder is synced with the
disk before it is used: a file the catalog does not know, or whose size or modification time
changed, has its footer read again; a file that is gone takes its partitions with it. So a
missing catalog is rebuilt, and a stale one (a crash between the files and the catalog, a file
deleted by hand) is put right, by the same code.

Two views of the same partitions. ``parts`` has a row per (symbol, day, file), keyed symbol
first: a commit's or a reader's question (these symbols, these days) is a few key lookups, also
in twenty years of a whole market. ``blocks`` (:mod:`catalog_blocks`) hold a file's partitions
of one day as arrays, for the questions over whole ranges (planning a year: 2.5M partitions),
and month ``rollups`` (:mod:`catalog_rollups`), derived from them, answer ``mp status`` and
``mp update``'s spans. The questions themselves are in
:mod:`marketpipe.storage.catalog_queries`; this module keeps the index in step with the files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from marketpipe.model.errors import InvalidInputError, StorageError
from marketpipe.model.values import Series, Timeframe
from marketpipe.storage import catalog_blocks as blocks
from marketpipe.storage import catalog_rollups as rollups
from marketpipe.storage.catalog_queries import (
    SESSION_RANK,
    CatalogQueries,
    locked,
)
from marketpipe.storage.footer import Footer
from marketpipe.storage.holdings import FileHoldings, Holdings
from marketpipe.storage.layout import META_DIR
from marketpipe.storage.sqlite import connect, immediate, writable
from marketpipe.storage.stores import LocalStore

_VERSION = 3  # 2: the sources table; 3: blocks
# A file's partitions; a staged job's files keep theirs in ``staged_parts``, read by nobody.
_PARTS = """
    series_id INTEGER NOT NULL, day INTEGER NOT NULL, symbol_id INTEGER NOT NULL,
    file_id INTEGER NOT NULL, bars INTEGER NOT NULL, complete INTEGER NOT NULL,
    session INTEGER NOT NULL, rejected INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (series_id, symbol_id, day, file_id)
"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, provider TEXT NOT NULL, feed TEXT NOT NULL,
    adjustment TEXT NOT NULL, timeframe TEXT NOT NULL, settings TEXT,
    UNIQUE (provider, feed, adjustment, timeframe)
);
CREATE TABLE IF NOT EXISTS symbols (id INTEGER PRIMARY KEY, symbol TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, month TEXT NOT NULL, name TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, job_id TEXT, fetched_at TEXT,
    error TEXT, UNIQUE (series_id, month, name)
);
CREATE TABLE IF NOT EXISTS parts ({_PARTS}) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_by_file ON parts (file_id);
CREATE TABLE IF NOT EXISTS staged_parts ({_PARTS}) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks ({blocks.COLUMNS});
CREATE INDEX IF NOT EXISTS blocks_by_file ON blocks (file_id);
CREATE TABLE IF NOT EXISTS staged_blocks ({blocks.COLUMNS});
{rollups.SCHEMA}
CREATE TABLE IF NOT EXISTS staged_jobs (job_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sources (
    file_id INTEGER NOT NULL, day INTEGER NOT NULL, version TEXT NOT NULL,
    PRIMARY KEY (file_id, day)
) WITHOUT ROWID;
"""


#: What a staged job's files hold, in ``staged_<table>`` until it is published.
_HIDDEN = ("parts", "blocks")

_IN_MEMORY: ContextVar[bool] = ContextVar("marketpipe_catalog_in_memory", default=False)


@contextmanager
def in_memory() -> Iterator[None]:
    """Catalogs made inside this block live in this process's memory, never in the dataset.

    A Dask worker builds its sink in one: it commits bar files and asks which files hold the
    covered rows, which its own catalog answers from the files (each folder is synced from the
    store before it is used, so other writers' files are seen); the client alone keeps the
    dataset's catalog file, synced from the files the workers report."""
    token = _IN_MEMORY.set(True)
    try:
        yield
    finally:
        _IN_MEMORY.reset(token)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """``name -> (size, mtime_ns)`` of the bar files in ``folder`` (temp files start with a dot)."""
    return LocalStore(folder.parent).listing(folder.name)


class Catalog(CatalogQueries):
    """The catalog of the dataset under ``root``."""

    def __init__(self, root: Path, holdings: Holdings | None = None) -> None:
        """The catalog kept under the local ``root`` of what ``holdings`` hold (by default the
        Parquet files under ``root`` itself; a dataset in object storage keeps its catalog in a
        local state folder)."""
        self.root = Path(root)
        self.holdings: Holdings = (
            holdings if holdings is not None else FileHoldings(LocalStore(self.root))
        )
        self.path: Path | None = None
        self._symbol_ids: dict[str, int] = {}
        self._lock = threading.RLock()
        # A read-only dataset (a read-only mount, a folder without write permission) is
        # indexed in memory from its files, as a cluster's worker does.
        self.read_only = not _IN_MEMORY.get() and not writable(self.root / META_DIR)
        if _IN_MEMORY.get() or self.read_only:
            self._conn = self._open(":memory:")
            return
        self.path = self.root / META_DIR / "catalog.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open(self.path)
        except sqlite3.DatabaseError:
            # A damaged catalog is only an index of the files: set it aside and rebuild.
            for suffix in ("", "-wal", "-shm"):
                damaged = self.path.with_name(self.path.name + suffix)
                if damaged.exists():
                    os.replace(damaged, damaged.with_name(damaged.name + ".damaged"))
            self._conn = self._open(self.path)

    def _open(self, path: Path | str) -> sqlite3.Connection:
        # The files are the truth and the catalog is rebuilt from them, so a lost last
        # transaction after a power cut costs a footer read, not data: NORMAL is enough.
        conn = connect(path, synchronous="NORMAL", timeout=60.0)
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
                # Another version's index: it is rebuilt from the files, so start afresh.
                conn.executescript(
                    "DROP TABLE IF EXISTS parts; DROP TABLE IF EXISTS files; "
                    "DROP TABLE IF EXISTS symbols; DROP TABLE IF EXISTS series; "
                    "DROP TABLE IF EXISTS staged_parts; DROP TABLE IF EXISTS staged_jobs; "
                    "DROP TABLE IF EXISTS sources; DROP TABLE IF EXISTS blocks; "
                    "DROP TABLE IF EXISTS staged_blocks; DROP TABLE IF EXISTS rollups; "
                    f"PRAGMA user_version = {_VERSION};"
                )
            conn.executescript(_SCHEMA)
            conn.execute("SELECT COUNT(*) FROM series").fetchone()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        # Under the lock: closing a connection another thread is inside crashes the process
        # (SIGSEGV in sqlite3); a thread that comes later gets ProgrammingError instead.
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with immediate(self._conn) as db:
                yield db
        except BaseException:
            self._symbol_ids.clear()  # ids handed out inside the transaction are gone
            raise

    # series -----------------------------------------------------------------------------------

    def _series_id(self, series: Series, create: bool = False) -> int | None:
        key = (series.provider, series.feed, series.adjustment, series.timeframe.value)
        where = "provider=? AND feed=? AND adjustment=? AND timeframe=?"
        row = self._conn.execute(f"SELECT id FROM series WHERE {where}", key).fetchone()
        if row is None and create:
            self._conn.execute(
                "INSERT OR IGNORE INTO series (provider, feed, adjustment, timeframe) "
                "VALUES (?, ?, ?, ?)",
                key,
            )
            row = self._conn.execute(f"SELECT id FROM series WHERE {where}", key).fetchone()
        return None if row is None else int(row[0])

    @locked
    def series(self) -> list[Series]:
        """The series that hold at least one partition."""
        rows = self._conn.execute(
            "SELECT provider, feed, adjustment, timeframe FROM series s "
            "WHERE EXISTS (SELECT 1 FROM parts p WHERE p.series_id = s.id) ORDER BY 1, 2, 3, 4"
        ).fetchall()
        return [Series(p, f, a, Timeframe.parse(t)) for p, f, a, t in rows]

    @locked
    def claim(self, series: Series, shaping: Mapping[str, str]) -> None:
        """Record the settings that shaped the series' bars, or refuse settings that differ from
        those its stored bars were fetched with (two kinds of bars must not mix in one series)."""
        if not shaping:
            return
        with self._tx() as db:
            series_id = self._series_id(series, create=True)
            row = db.execute("SELECT settings FROM series WHERE id=?", (series_id,)).fetchone()
            stored = json.loads(row[0]) if row and row[0] else None
            has_rows = db.execute(
                "SELECT 1 FROM parts WHERE series_id=? LIMIT 1", (series_id,)
            ).fetchone()
            if stored is not None and has_rows and stored != dict(shaping):
                theirs = ", ".join(f"{k}={v}" for k, v in sorted(stored.items()))
                ours = ", ".join(f"{k}={v}" for k, v in sorted(shaping.items()))
                raise InvalidInputError(
                    f"the dataset's {series} bars were fetched with {theirs}, not {ours}: "
                    "they would mix in one series; use another --data-dir for them"
                )
            db.execute(
                "UPDATE series SET settings=? WHERE id=?",
                (json.dumps(dict(sorted(shaping.items()))), series_id),
            )

    # symbols ----------------------------------------------------------------------------------

    def _ids(self, symbols: Iterable[str], create: bool) -> dict[str, int]:
        wanted = [s for s in dict.fromkeys(symbols) if s not in self._symbol_ids]
        if wanted and create:
            self._conn.executemany(
                "INSERT OR IGNORE INTO symbols (symbol) VALUES (?)", [(s,) for s in wanted]
            )
        if wanted:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for symbol_id, symbol in self._conn.execute(
                    f"SELECT id, symbol FROM symbols WHERE symbol IN ({marks})", chunk
                ):
                    self._symbol_ids[symbol] = int(symbol_id)
        return self._symbol_ids

    # keeping up with the files ----------------------------------------------------------------

    @locked
    def sync_staging(self) -> None:
        """Hide the files of the jobs whose commits are staged (a restatement not yet
        published: :meth:`Holdings.staged_jobs`), and show, in one transaction, those of the
        jobs published since. A staged job's files hold their partitions in ``staged_parts``,
        which no question reads."""
        listed = getattr(self.holdings, "staged_jobs", None)
        staged = set(listed()) if listed is not None else set()
        known = {j for (j,) in self._conn.execute("SELECT job_id FROM staged_jobs")}
        if staged == known:
            return
        with self._tx() as db:
            for job, into, out_of in [
                *((j, f"staged_{t}", t) for j in sorted(staged - known) for t in _HIDDEN),
                *((j, t, f"staged_{t}") for j in sorted(known - staged) for t in _HIDDEN),
            ]:
                files = "SELECT id FROM files WHERE job_id=?"
                db.execute(
                    f"INSERT OR REPLACE INTO {into} SELECT * FROM {out_of} "
                    f"WHERE file_id IN ({files})",
                    (job,),
                )
                db.execute(f"DELETE FROM {out_of} WHERE file_id IN ({files})", (job,))
            db.execute("DELETE FROM rollups")  # files shown or hidden: every month may change
            db.execute("DELETE FROM staged_jobs")
            db.executemany("INSERT INTO staged_jobs VALUES (?)", [(j,) for j in sorted(staged)])

    # Lock order, as a commit takes them: a month folder's lock, then the catalog's. A sync
    # never waits for a folder while it holds the catalog (a commit holding that folder would
    # wait for the catalog: a deadlock between two units of one job).

    def sync(self, series: Series, months: Iterable[str] | None = None) -> None:
        """Bring the catalog of ``series`` (those months, or all) in line with the files."""
        self.sync_staging()
        self._sync(series, months)

    def _sync(self, series: Series, months: Iterable[str] | None) -> None:
        stored = set(self.holdings.months(series))
        with self._lock:
            known = {
                m
                for (m,) in self._conn.execute(
                    "SELECT DISTINCT month FROM files WHERE series_id=?",
                    (self._series_id(series) or -1,),
                )
            }
        wanted = stored | known if months is None else set(months)
        catalogued = self._every_file(series, min(wanted, default=""), max(wanted, default=""))
        for month in sorted(wanted):
            if month not in stored:
                if month in known:
                    self.sync_folder(series, month)  # the month is gone: forget its files
                continue
            if self._in_step(series, month, catalogued.get(month, {})):
                continue  # what the folder holds is what the catalog says: nothing to take
            # Nobody commits into a read-only dataset: no lock to take (nor could it be).
            with contextlib.nullcontext() if self.read_only else self.holdings.lock(series, month):
                self.sync_folder(series, month)

    def sync_all(self) -> list[Series]:
        """Sync every series on disk (and forget those whose folders are gone)."""
        self.sync_staging()  # once, not once a series
        for series in sorted(set(self.holdings.series()) | set(self.series())):
            self._sync(series, None)
        return self.series()

    def _in_step(
        self, series: Series, month: str, known: Mapping[str, tuple[int, int, int]]
    ) -> bool:
        """The month folder lists exactly the files the catalog knows (``known``), with their
        sizes and modification times: a read of twenty years asks 240 folders, and taking each
        one's lock only to find nothing changed cost more than the read."""
        on_disk = self.holdings.listing(series, month)
        return known.keys() == on_disk.keys() and all(known[n][1:3] == on_disk[n] for n in on_disk)

    def _every_file(
        self, series: Series, first: str, last: str
    ) -> dict[str, dict[str, tuple[int, int, int]]]:
        """Month -> the catalog's files of ``series`` there (as :meth:`_files`), months
        ``first`` to ``last``, in one query rather than one a month."""
        out: dict[str, dict[str, tuple[int, int, int]]] = {}
        with self._lock:
            series_id = self._series_id(series)
            if series_id is None:
                return out
            rows = self._conn.execute(
                "SELECT month, name, id, size, mtime_ns FROM files WHERE series_id=? "
                "AND month BETWEEN ? AND ?",
                (series_id, first, last),
            ).fetchall()
        for month, name, i, size, mtime in rows:
            out.setdefault(month, {})[name] = (int(i), int(size), int(mtime))
        return out

    @locked
    def sync_folder(self, series: Series, month: str) -> None:
        """Sync one month; the caller holds its lock (or it does not exist)."""
        on_disk = self.holdings.listing(series, month)
        series_id = self._series_id(series)
        known = self._files(series_id, month) if series_id is not None else {}
        changed = [n for n in sorted(on_disk) if n not in known or known[n][1:3] != on_disk[n]]
        gone = [n for n in known if n not in on_disk]
        if not changed and not gone:
            return
        updates: dict[str, Footer | StorageError | None] = {name: None for name in gone}
        for name in changed:
            try:
                updates[name] = self.holdings.footer(series, month, name)
            except StorageError as exc:
                updates[name] = exc
        self._apply(series, month, updates, {n: on_disk[n] for n in changed})

    @locked
    def record(
        self,
        series: Series,
        month: str,
        written: Mapping[str, Footer | None],
        stats: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        """After a commit: ``name -> footer`` of files written, ``None`` for files removed;
        ``stats`` the written files' (size, stamp) when the writer knows them."""
        known = dict(stats or {})
        for name, footer in written.items():
            if footer is not None and name not in known:
                known[name] = self.holdings.stat(series, month, name)
        self._apply(series, month, dict(written), known)

    def _files(self, series_id: int, month: str) -> dict[str, tuple[int, int, int]]:
        rows = self._conn.execute(
            "SELECT name, id, size, mtime_ns FROM files WHERE series_id=? AND month=?",
            (series_id, month),
        )
        return {name: (int(i), int(size), int(mtime)) for name, i, size, mtime in rows}

    def _apply(
        self,
        series: Series,
        month: str,
        updates: Mapping[str, Footer | StorageError | None],
        stats: Mapping[str, tuple[int, int]],
    ) -> None:
        symbols = [s for u in updates.values() if isinstance(u, Footer) for (s, _) in u.entries]
        with self._tx() as db:
            series_id = self._series_id(series, create=True)
            assert series_id is not None
            ids = self._ids(symbols, create=True)
            if updates:  # the month's rollup is made again from its blocks when next asked
                db.execute("DELETE FROM rollups WHERE series_id=? AND month=?", (series_id, month))
            for name, update in updates.items():
                row = db.execute(
                    "SELECT id FROM files WHERE series_id=? AND month=? AND name=?",
                    (series_id, month, name),
                ).fetchone()
                if row is not None:
                    db.execute("DELETE FROM parts WHERE file_id=?", (row[0],))
                    db.execute("DELETE FROM staged_parts WHERE file_id=?", (row[0],))
                    db.execute("DELETE FROM blocks WHERE file_id=?", (row[0],))
                    db.execute("DELETE FROM staged_blocks WHERE file_id=?", (row[0],))
                    db.execute("DELETE FROM sources WHERE file_id=?", (row[0],))
                    db.execute("DELETE FROM files WHERE id=?", (row[0],))
                if update is None:
                    continue
                size, mtime = stats[name]
                footer = update if isinstance(update, Footer) else None
                cursor = db.execute(
                    "INSERT INTO files (series_id, month, name, size, mtime_ns, job_id, "
                    "fetched_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        series_id,
                        month,
                        name,
                        size,
                        mtime,
                        footer.job_id if footer else None,
                        footer.fetched_at if footer else None,
                        None if footer else str(update),
                    ),
                )
                if footer is None:
                    continue
                file_id = int(cursor.lastrowid or 0)
                rank = SESSION_RANK[footer.session]
                held = db.execute(
                    "SELECT 1 FROM staged_jobs WHERE job_id=?", (footer.job_id,)
                ).fetchone()
                table = "staged_parts" if held else "parts"
                db.executemany(
                    "INSERT OR REPLACE INTO sources (file_id, day, version) VALUES (?, ?, ?)",
                    [
                        (file_id, dt.date.fromisoformat(day).toordinal(), version)
                        for day, version in footer.sources.items()
                    ],
                )
                # A day's ordinal made once, not once a partition.
                days = {d for _, d in footer.entries}
                ordinals = {d: dt.date.fromisoformat(d).toordinal() for d in days}
                parts = [
                    (ordinals[day], ids[symbol], entry.bars, int(entry.complete), entry.rejected)
                    for (symbol, day), entry in footer.entries.items()
                ]
                db.executemany(
                    f"INSERT OR REPLACE INTO {table} (series_id, day, symbol_id, file_id, bars, "
                    "complete, session, rejected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(series_id, d, i, file_id, b, c, rank, r) for d, i, b, c, r in parts],
                )
                db.executemany(
                    f"INSERT INTO {'staged_blocks' if held else 'blocks'} (series_id, day, "
                    "file_id, session, symbols, bars, complete, rejected) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    blocks.rows(series_id, file_id, rank, parts),
                )
