"""A job's partitions, each naming its file by id: the files a unit wrote (and their quarantine
files) are named once, in ``files``, for the few hundred partitions of a whole market's unit.

The partitions table is keyed (job, symbol, day) with no rowid beside the key (whose index would
hold the key a second time): about 80 bytes a partition, where a row naming its file's path took
235 (and 387 on disk); 4 GB rather than 12 to 19 for a twenty-year whole-market backfill. A
store of an earlier release is rewritten once (:func:`upgrade`); one on a read-only medium is
read as it is, through the same view (:data:`OLD_ROWS`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_PARTITIONS = """CREATE TABLE IF NOT EXISTS {name} (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    symbol TEXT NOT NULL,
    day TEXT NOT NULL,
    state TEXT NOT NULL,
    bars INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    file INTEGER REFERENCES files(id),
    quarantine INTEGER REFERENCES files(id),
    error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job_id, symbol, day)
) WITHOUT ROWID;"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE
);
{_PARTITIONS.format(name="partitions")}
"""

#: The partitions with their files' paths, for reading (a view of the connection's own).
ROWS = """CREATE TEMP VIEW IF NOT EXISTS partition_rows AS SELECT p.job_id, p.symbol, p.day,
    p.state, p.bars, p.rejected, f.path AS path, q.path AS quarantine, p.error, p.updated_at
    FROM partitions p LEFT JOIN files f ON f.id = p.file LEFT JOIN files q ON q.id = p.quarantine"""
#: The same of a store written before files were named once, read where it cannot be upgraded.
OLD_ROWS = """CREATE TEMP VIEW IF NOT EXISTS partition_rows AS SELECT job_id, symbol, day, state,
    bars, rejected, path, quarantine, error, updated_at FROM partitions"""

#: Partitions an upgrade rewrites in about a second (6 us each here), and the most it does
#: without saying so first.
UPGRADED_A_SECOND = 150_000


def names_paths(conn: sqlite3.Connection) -> bool:
    """The store's partitions name their file's path (a store of an earlier release)."""
    return "path" in {row[1] for row in conn.execute("PRAGMA table_info(partitions)")}


def upgrade(db: sqlite3.Connection, path: Path) -> None:
    """The partitions of the store at ``path`` rewritten to name their files by id, in the
    caller's write transaction; nothing when another process did it meanwhile."""
    if not names_paths(db):
        return
    (rows,) = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM partitions").fetchone()
    if rows > 5 * UPGRADED_A_SECOND:
        log.warning(
            "%s: the job store names each file once from this release on: rewriting its %s "
            "partitions, once (about %d s)",
            path,
            f"{rows:,}",
            rows // UPGRADED_A_SECOND,
        )
    db.execute(
        "INSERT OR IGNORE INTO files (path) SELECT path FROM partitions WHERE path IS NOT NULL "
        "UNION SELECT quarantine FROM partitions WHERE quarantine IS NOT NULL"
    )
    db.execute(_PARTITIONS.format(name="partitions_by_file"))
    db.execute(
        "INSERT INTO partitions_by_file SELECT p.job_id, p.symbol, p.day, p.state, p.bars, "
        "p.rejected, f.id, q.id, p.error, p.updated_at FROM partitions p "
        "LEFT JOIN files f ON f.path = p.path LEFT JOIN files q ON q.path = p.quarantine "
        # In the new key's order (the old key's index gives it): pages filled one after
        # another, not rows scattered over them (2M partitions: 16 s in the old rows' order).
        "ORDER BY p.job_id, p.symbol, p.day"
    )
    db.execute("DROP TABLE partitions")
    db.execute("ALTER TABLE partitions_by_file RENAME TO partitions")


def file_ids(db: sqlite3.Connection, paths: Iterable[str | None]) -> dict[str, int]:
    """The ``files`` id of each path, added as needed."""
    named = sorted({p for p in paths if p is not None})
    db.executemany("INSERT OR IGNORE INTO files (path) VALUES (?)", [(p,) for p in named])
    ids: dict[str, int] = {}
    for i in range(0, len(named), 500):
        chunk = named[i : i + 500]
        marks = ",".join("?" * len(chunk))
        ids.update(db.execute(f"SELECT path, id FROM files WHERE path IN ({marks})", chunk))
    return ids


def forget_unused(db: sqlite3.Connection) -> None:
    """Drop the files no partition names any more (their partitions' paths were rewritten)."""
    db.execute(
        "DELETE FROM files WHERE id NOT IN (SELECT file FROM partitions WHERE file IS NOT NULL "
        "UNION SELECT quarantine FROM partitions WHERE quarantine IS NOT NULL)"
    )
