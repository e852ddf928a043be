"""SQLite as the job store and the catalog use it: WAL (readers never wait for the writer), a
busy timeout for the other processes' writers, and ``BEGIN IMMEDIATE`` transactions (a writer
takes the lock when it starts, so two writers never deadlock upgrading a read lock)."""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def writable(folder: Path) -> bool:
    """Whether this process may write in ``folder`` (or, when it does not exist yet, in its
    nearest existing parent): false on a read-only mount or a folder without write permission,
    where reading commands still work and nothing is written."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return os.access(candidate, os.W_OK)
    return True


def connect_read_only(path: Path) -> sqlite3.Connection:
    """``path`` opened for reading on a medium nobody writes (``immutable``: no lock, no WAL
    index to create, which a read-only folder could not hold)."""
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?immutable=1"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def connect(path: Path | str, synchronous: str, timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
