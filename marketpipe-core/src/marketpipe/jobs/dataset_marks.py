"""What the job store remembers of the dataset rather than of a job: the partitions
``mp delete`` removed (every later ``mp update`` leaves them alone), and when each symbol's
corporate actions were last asked of a provider. Mixed into
:class:`~marketpipe.jobs.store.SqliteJobStore`, whose tables these are."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager

from marketpipe.model.partition import PartitionKey


def stamp() -> str:
    """The present moment as the job store records it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class DatasetMarks:
    _conn: sqlite3.Connection
    read_only: bool

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def mark_deleted(self, series: str, prefix: str, keys: Iterable[PartitionKey]) -> None:
        """``mp delete`` removes ``keys`` of ``series`` (its folder ``prefix``): recorded before
        the rows go, so a delete interrupted after it is finished by running it again, and
        every later ``mp update`` leaves those partitions alone. The jobs' partitions there
        (completed, or found missing) are marked DELETED."""
        now = stamp()
        keys = list(keys)
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO deletions (series, symbol, day, deleted_at) "
                "VALUES (?, ?, ?, ?)",
                [(series, s, d.isoformat(), now) for s, d in keys],
            )
            db.executemany(
                "UPDATE partitions SET state='DELETED', updated_at=? WHERE state IN "
                "('COMPLETED', 'MISSING') AND symbol=? AND day=? AND "
                "substr((SELECT path FROM files WHERE id = file), 1, ?) = ?",
                [(now, s, d.isoformat(), len(prefix), prefix) for s, d in keys],
            )

    def deleted(self, series: str, symbols: Iterable[str]) -> set[PartitionKey]:
        """The partitions of ``symbols`` in ``series`` that ``mp delete`` removed."""
        wanted = set(symbols)
        return {
            (symbol, dt.date.fromisoformat(day))
            for symbol, day in self._conn.execute(
                "SELECT symbol, day FROM deletions WHERE series=?", (series,)
            )
            if symbol in wanted
        }

    def forget_deletions(self, series: str, keys: Iterable[PartitionKey]) -> None:
        """An explicit ingest of deleted partitions: they belong to the dataset again."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM deletions WHERE series=? AND symbol=? AND day=?",
                [(series, s, d.isoformat()) for s, d in keys],
            )

    def refreshed(
        self, provider: str, symbols: Iterable[str], session: dt.date, since: dt.date
    ) -> set[str]:
        """Those of ``symbols`` whose actions from ``since`` on were asked of ``provider``
        after ``session`` had completed."""
        wanted = set(symbols)
        rows = self._conn.execute(
            "SELECT symbol FROM action_refreshes WHERE provider=? AND session>=? AND since<=?",
            (provider, session.isoformat(), since.isoformat()),
        )
        return {s for (s,) in rows if s in wanted}

    def mark_refreshed(
        self, provider: str, symbols: Iterable[str], session: dt.date, since: dt.date
    ) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO action_refreshes (provider, symbol, session, since) "
                "VALUES (?, ?, ?, ?)",
                [(provider, s, session.isoformat(), since.isoformat()) for s in set(symbols)],
            )
