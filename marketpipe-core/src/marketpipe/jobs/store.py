"""SQLite job store under the data dir: jobs, their partitions, states and errors.

A partition is recorded complete only after its file is committed, and all partitions of a unit
are recorded in one transaction (their rows: :mod:`marketpipe.jobs.partition_files`). Secrets are never stored: the configuration's ``settings`` holds
only non-secret values.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from marketpipe.jobs import partition_files, plans
from marketpipe.jobs.dataset_marks import DatasetMarks, stamp
from marketpipe.jobs.job import IngestionConfiguration, IngestionJob, ProcessingState
from marketpipe.model.errors import InvalidInputError, JobNotFoundError
from marketpipe.model.partition import PartitionKey
from marketpipe.model.values import IngestionJobId, Symbol, TimeRange
from marketpipe.storage.sqlite import connect, connect_read_only, immediate, writable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    symbols TEXT NOT NULL,
    start_day TEXT NOT NULL,
    end_day TEXT NOT NULL,
    configuration TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    error TEXT,
    scope TEXT
);
-- What mp delete removed, per series: mp update never fetches it again; an explicit mp ingest
-- of those days forgets it.
CREATE TABLE IF NOT EXISTS deletions (
    series TEXT NOT NULL,
    symbol TEXT NOT NULL,
    day TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (series, symbol, day)
);
-- When each symbol's corporate actions were last asked of a provider (the last completed
-- session then) and from which day: a job asks again only after a later session has
-- completed, or for earlier days.
CREATE TABLE IF NOT EXISTS action_refreshes (
    provider TEXT NOT NULL,
    symbol TEXT NOT NULL,
    session TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (provider, symbol)
);
"""

_SELECT_JOB = """SELECT j.id, j.provider, j.symbols, j.start_day, j.end_day, j.configuration,
    j.state, j.created_at, j.started_at, j.completed_at, j.error, j.scope, (SELECT COALESCE(SUM(p.bars), 0) FROM partitions p
    WHERE p.job_id = j.id AND p.state = 'COMPLETED') FROM jobs j"""


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _parse_dt(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@attrs.frozen
class PartitionRecord:
    symbol: str
    day: dt.date
    state: str
    bars: int
    rejected: int
    path: str | None
    quarantine: str | None
    error: str | None


@attrs.frozen
class PartitionOutcome:
    """What happened to one partition of a committed unit."""

    symbol: str
    day: dt.date
    bars: int
    rejected: int
    path: str
    quarantine: str | None = None


class SqliteJobStore(DatasetMarks):
    """Jobs and partitions in ``<data>/_marketpipe/jobs.sqlite`` (WAL, safe for several processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: On a read-only medium the store is read as it is (a missing one reads as empty);
        #: reading commands work, and nothing is written.
        self.read_only = not writable(path.parent)
        if self.read_only:
            self._conn = connect_read_only(path) if path.exists() else sqlite3.connect(":memory:")
            if not path.exists():
                self._conn.executescript(_SCHEMA + partition_files.SCHEMA + plans.SCHEMA)
            self._old_rows = partition_files.names_paths(self._conn)
            self._conn.execute(partition_files.OLD_ROWS if self._old_rows else partition_files.ROWS)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(path, synchronous="FULL", timeout=30.0)
        self._conn.executescript(_SCHEMA + partition_files.SCHEMA + plans.SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
        if "scope" not in columns:  # a store written before jobs had a scope
            self._conn.execute("ALTER TABLE jobs ADD COLUMN scope TEXT")
        if partition_files.names_paths(self._conn):
            with self._tx() as db:
                partition_files.upgrade(db, path)
        self._old_rows = False
        self._conn.execute(partition_files.ROWS)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> SqliteJobStore:
        return cls(data_dir / "_marketpipe" / "jobs.sqlite")

    def close(self) -> None:
        self._conn.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn)

    # jobs ------------------------------------------------------------------------------------

    def save(self, job: IngestionJob) -> None:
        cfg = job.configuration
        configuration = json.dumps(
            {
                "provider": cfg.provider,
                "batch_size": cfg.batch_size,
                "max_retries": cfg.max_retries,
                "max_concurrency": cfg.max_concurrency,
                "timeframe": cfg.timeframe.value,
                "session": cfg.session.value,
                "feed": cfg.feed,
                "settings": dict(cfg.settings),
            }
        )
        with self._tx() as db:
            db.execute(
                """INSERT INTO jobs (id, provider, symbols, start_day, end_day, configuration,
                       state, created_at, started_at, completed_at, error, scope)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET state=excluded.state,
                       started_at=excluded.started_at, completed_at=excluded.completed_at,
                       error=excluded.error, configuration=excluded.configuration""",
                (
                    job.job_id.value,
                    cfg.provider,
                    json.dumps([s.value for s in job.symbols]),
                    job.time_range.start.isoformat(),
                    job.time_range.end.isoformat(),
                    configuration,
                    job.state.value,
                    _iso(job.created_at),
                    _iso(job.started_at),
                    _iso(job.completed_at),
                    job.error_message,
                    json.dumps(
                        {
                            "starts": {s: d.isoformat() for s, d in job.symbol_starts.items()},
                            "ends": {s: d.isoformat() for s, d in job.symbol_ends.items()},
                            "refresh": job.refresh,
                            "keep_deleted": job.keep_deleted,
                        }
                    ),
                ),
            )

    def _row_to_job(self, row: sqlite3.Row | tuple[Any, ...]) -> IngestionJob:
        (
            job_id,
            _provider,
            symbols,
            start,
            end,
            configuration,
            state,
            created,
            started,
            completed,
            error,
            scope,
            bars,
        ) = row
        cfg = json.loads(configuration)
        extent = json.loads(scope) if scope else {}
        return IngestionJob(
            job_id=IngestionJobId(job_id),
            symbols=tuple(Symbol(s) for s in json.loads(symbols)),
            time_range=TimeRange(start, end),
            configuration=IngestionConfiguration(**cfg),
            state=ProcessingState(state),
            created_at=_parse_dt(created) or dt.datetime.now(dt.UTC),
            started_at=_parse_dt(started),
            completed_at=_parse_dt(completed),
            error_message=error,
            bars_processed=bars,
            symbol_starts={
                s: dt.date.fromisoformat(d) for s, d in extent.get("starts", {}).items()
            },
            symbol_ends={s: dt.date.fromisoformat(d) for s, d in extent.get("ends", {}).items()},
            refresh=bool(extent.get("refresh", False)),
            keep_deleted=bool(extent.get("keep_deleted", False)),
        )

    def get(self, job_id: IngestionJobId | str) -> IngestionJob:
        key = job_id.value if isinstance(job_id, IngestionJobId) else IngestionJobId(job_id).value
        row = self._conn.execute(f"{_SELECT_JOB} WHERE id = ?", (key,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job {key} in {self.path.parent.parent}; see `mp jobs list`")
        return self._row_to_job(row)

    def resolve(self, text: str) -> IngestionJobId:
        """The job whose id is ``text``, or starts with it (as git takes a commit prefix)."""
        key = text.strip()
        if not key:
            raise InvalidInputError("give a job id (see `mp jobs list`)")
        rows = self._conn.execute(
            "SELECT id FROM jobs WHERE id = ? OR substr(id, 1, ?) = ? ORDER BY id LIMIT 11",
            (key, len(key), key),
        ).fetchall()
        ids = [str(r[0]) for r in rows]
        if key in ids:
            return IngestionJobId(key)
        if len(ids) == 1:
            return IngestionJobId(ids[0])
        if not ids:
            raise JobNotFoundError(f"no job {key} in {self.path.parent.parent}; see `mp jobs list`")
        shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
        raise InvalidInputError(f"job id prefix {key} is ambiguous: it matches {shown}")

    def list_jobs(self) -> list[IngestionJob]:
        # Newest first; jobs made within one second (created_at is kept to the second) in the
        # order they were made.
        rows = self._conn.execute(
            f"{_SELECT_JOB} ORDER BY j.created_at DESC, j.rowid DESC"
        ).fetchall()
        return [self._row_to_job(r) for r in rows]

    def totals(self, job_id: IngestionJobId) -> dict[str, int]:
        """Partition counts by state, and bars and rejected rows over the job."""
        rows = self._conn.execute(
            "SELECT state, COUNT(*), SUM(bars), SUM(rejected) FROM partitions WHERE job_id = ? "
            "GROUP BY state",
            (job_id.value,),
        ).fetchall()
        out = {"partitions": 0, "bars": 0, "rejected": 0}
        for state, count, bars, rejected in rows:
            out[state.lower()] = count
            out["partitions"] += count
            out["bars"] += bars or 0
            out["rejected"] += rejected or 0
        planned = plans.counts(self._conn, job_id.value)
        if planned is not None:  # the plan's partitions without a row: stored, or pending
            asked, stored = planned
            if stored:
                out["stored"] = out.get("stored", 0) + stored
            pending = asked - stored - out["partitions"]
            if pending > 0:
                out["pending"] = out.get("pending", 0) + pending
            out["partitions"] = asked
        return out

    # partitions ------------------------------------------------------------------------------

    def plan(
        self,
        job_id: IngestionJobId,
        symbols: list[str],
        ordinals: np.ndarray,
        asked: np.ndarray,
        stored: np.ndarray,
    ) -> None:
        """Record the job's plan: ``asked`` (symbols x day ``ordinals``) are its partitions,
        ``stored`` those it found held complete and skips. A failed partition now stored
        elsewhere is no longer failed; rows a job planned before plans were kept (one a
        partition, pending ones included) give way to the plan."""
        with self._tx() as db:
            plans.replace(db, job_id.value, symbols, ordinals, asked, stored)

    def completed_keys(self, job_id: IngestionJobId) -> set[PartitionKey]:
        rows = self._conn.execute(
            "SELECT symbol, day FROM partitions WHERE job_id = ? AND state = 'COMPLETED'",
            (job_id.value,),
        ).fetchall()
        return {(s, dt.date.fromisoformat(d)) for s, d in rows}

    def mark_completed(self, job_id: IngestionJobId, outcomes: Iterable[PartitionOutcome]) -> None:
        """Record a committed unit: all its partitions in one transaction."""
        now = stamp()
        outcomes = list(outcomes)
        with self._tx() as db:
            ids = partition_files.file_ids(
                db, [p for o in outcomes for p in (o.path, o.quarantine)]
            )
            db.executemany(
                "INSERT INTO partitions (job_id, symbol, day, state, bars, rejected, file, "
                "quarantine, error, updated_at) VALUES (?, ?, ?, 'COMPLETED', ?, ?, ?, ?, NULL, ?) "
                "ON CONFLICT(job_id, symbol, day) DO UPDATE SET state='COMPLETED', "
                "bars=excluded.bars, rejected=excluded.rejected, file=excluded.file, "
                "quarantine=excluded.quarantine, error=NULL, updated_at=excluded.updated_at",
                [
                    (
                        job_id.value,
                        o.symbol,
                        o.day.isoformat(),
                        o.bars,
                        o.rejected,
                        ids[o.path],
                        None if o.quarantine is None else ids[o.quarantine],
                        now,
                    )
                    for o in outcomes
                ],
            )

    def rewrite_paths(self, rewrite: Callable[[str, str, str], str | None]) -> int:
        """Change recorded file paths: ``rewrite(provider, job id, path)`` gives the new path, or
        ``None`` to keep it (a dataset whose layout was upgraded)."""
        rows = self._conn.execute(
            "SELECT DISTINCT p.job_id, j.provider, f.path, p.file FROM partitions p JOIN jobs j "
            "ON j.id = p.job_id JOIN files f ON f.id = p.file"
        ).fetchall()
        updates = [
            (new, job_id, file)
            for job_id, provider, path, file in rows
            if (new := rewrite(provider, job_id, path)) is not None
        ]
        with self._tx() as db:
            ids = partition_files.file_ids(db, [new for new, _, _ in updates])
            db.executemany(
                "UPDATE partitions SET file=? WHERE job_id=? AND file=?",
                [(ids[new], job_id, file) for new, job_id, file in updates],
            )
            partition_files.forget_unused(db)
        return len(updates)

    def completed_paths(self) -> list[str]:
        """The files the store records COMPLETED partitions in."""
        return [
            str(p)
            for (p,) in self._conn.execute(
                "SELECT DISTINCT path FROM partition_rows WHERE state='COMPLETED' AND path IS "
                "NOT NULL"
                if self._old_rows
                # The files' ids first (integers, a few hundred partitions each), then their paths.
                else "SELECT path FROM files WHERE id IN (SELECT file FROM partitions "
                "WHERE state='COMPLETED')"
            )
        ]

    def completed_at(self, path: str) -> list[tuple[str, str, dt.date, int]]:
        """``(job id, symbol, day, bars)`` of the completed partitions recorded in ``path``."""
        rows = self._conn.execute(
            "SELECT job_id, symbol, day, bars FROM partition_rows WHERE state='COMPLETED' AND "
            "path=?",
            (path,),
        )
        return [(j, s, dt.date.fromisoformat(d), int(b)) for j, s, d, b in rows]

    def mark_missing(self, partitions: Iterable[tuple[str, str, dt.date]]) -> None:
        """``(job id, symbol, day)`` completed partitions no file holds any more: no longer
        counted as held (``mp verify`` found them)."""
        now = stamp()
        with self._tx() as db:
            db.executemany(
                "UPDATE partitions SET state='MISSING', updated_at=? "
                "WHERE state='COMPLETED' AND job_id=? AND symbol=? AND day=?",
                [(now, j, s, d.isoformat()) for j, s, d in partitions],
            )

    def first_days(self, job_ids: Iterable[str]) -> dict[str, dt.date]:
        """``symbol -> first day`` those jobs committed or found stored (``mp update`` fetches
        each symbol from there, also when its files went missing)."""
        out: dict[str, int] = {}
        for job_id in job_ids:
            for symbol, day in self._conn.execute(
                "SELECT symbol, MIN(day) FROM partitions WHERE job_id=? "
                "AND state IN ('COMPLETED', 'STORED', 'MISSING') GROUP BY symbol",
                (job_id,),
            ):
                first = dt.date.fromisoformat(day).toordinal()
                out[symbol] = min(first, out.get(symbol, first))
            for symbol, _, stored in plans.read(self._conn, job_id):
                if len(stored):
                    out[symbol] = min(int(stored[0]), out.get(symbol, int(stored[0])))
        return {s: dt.date.fromordinal(d) for s, d in out.items()}

    def unstored(self, job_ids: Iterable[str]) -> list[tuple[str, dt.date, str, str | None]]:
        """``(symbol, day, job id, error)`` of the partitions those jobs were asked for and
        never stored (failed, pending, interrupted), unless the job was cancelled: what was
        asked belongs to the dataset's plan until it is stored (``mp update``, ``mp status``)."""
        out = []
        for job_id in job_ids:
            state = self._conn.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if state is None or state[0] == ProcessingState.CANCELLED.value:
                continue
            out += [
                (symbol, dt.date.fromisoformat(day), job_id, error)
                for symbol, day, error in self._conn.execute(
                    "SELECT symbol, day, error FROM partitions WHERE job_id=? "
                    "AND state IN ('PENDING', 'IN_PROGRESS', 'FAILED')",
                    (job_id,),
                )
            ]
            out += [(s, d, job_id, None) for s, d in plans.pending(self._conn, job_id)]
        return out

    def mark_failed(self, job_id: IngestionJobId, keys: Iterable[PartitionKey], error: str) -> None:
        now = stamp()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO partitions (job_id, symbol, day, state, error, updated_at) "
                "VALUES (?, ?, ?, 'FAILED', ?, ?) ON CONFLICT(job_id, symbol, day) DO UPDATE "
                "SET state='FAILED', error=excluded.error, updated_at=excluded.updated_at",
                [(job_id.value, s, d.isoformat(), error, now) for s, d in keys],
            )

    def partitions(self, job_id: IngestionJobId) -> list[PartitionRecord]:
        """Every partition of the job: those with a row, then the plan's others (found stored,
        or pending), ordered by day and symbol."""
        rows = self._conn.execute(
            "SELECT symbol, day, state, bars, rejected, path, quarantine, error FROM "
            "partition_rows WHERE job_id = ?",
            (job_id.value,),
        ).fetchall()
        out = [
            PartitionRecord(s, dt.date.fromisoformat(d), st, b, r, p, q, e)
            for s, d, st, b, r, p, q, e in rows
        ]
        seen = {(p.symbol, p.day) for p in out}
        for symbol, asked, stored in plans.read(self._conn, job_id.value):
            is_stored = set(stored.tolist())
            for day in asked.tolist():
                key = (symbol, dt.date.fromordinal(day))
                if key not in seen:
                    state = "STORED" if day in is_stored else "PENDING"
                    out.append(PartitionRecord(symbol, key[1], state, 0, 0, None, None, None))
        out.sort(key=lambda p: (p.day, p.symbol))
        return out
