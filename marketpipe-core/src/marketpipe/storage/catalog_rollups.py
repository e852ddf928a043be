"""The catalog's month rollups: per series, month and symbol, what ``mp status`` sums.

Twenty years of a whole market are 50M partitions; summing them for each ``mp status`` costs
seconds however they are read. A rollup holds, for one month of a series, one entry a symbol:
the days it has stored, those stored with no bars, partial and thin (each a 32-bit map of the
month's days), its bars and its rejected rows. Status reads 240 rollups of 10,000 entries for
twenty years instead of 50M partitions. A rollup is derived from the month's blocks when asked
and kept; a commit into the month drops it (in the commit's own transaction), so it is never
older than the blocks. Thin days depend on the provider's threshold: a rollup remembers the key
it was made with, and one made with another is made again.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable

import numpy as np

from marketpipe.storage import catalog_blocks as blocks

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollups (
    series_id INTEGER NOT NULL, month TEXT NOT NULL, thin_key TEXT NOT NULL,
    symbols BLOB NOT NULL, held BLOB NOT NULL, empty BLOB NOT NULL, partial BLOB NOT NULL,
    thin BLOB NOT NULL, bars BLOB NOT NULL, rejected BLOB NOT NULL,
    PRIMARY KEY (series_id, month)
) WITHOUT ROWID;
"""

_U4 = np.dtype("<u4")
_I8 = np.dtype("<i8")
_I4 = np.dtype("<i4")
#: Which entries of a month's blocks are thin (complete, and fewer bars than likely).
ThinOf = Callable[[blocks.Held], np.ndarray]


class Rollup:
    """Entries of several months, one a (month, symbol): ``first`` (the month's first day as
    an ordinal), ``symbol`` (a catalog id), the day maps ``held``, ``empty``, ``partial`` and
    ``thin`` (bit i: ``first + i``), ``bars`` and ``rejected``."""

    def __init__(self, **columns: np.ndarray) -> None:
        self.first: np.ndarray = columns["first"]
        self.symbol: np.ndarray = columns["symbol"]
        self.held: np.ndarray = columns["held"]
        self.empty: np.ndarray = columns["empty"]
        self.partial: np.ndarray = columns["partial"]
        self.thin: np.ndarray = columns["thin"]
        self.bars: np.ndarray = columns["bars"]
        self.rejected: np.ndarray = columns["rejected"]

    def __len__(self) -> int:
        return len(self.symbol)

    def take(self, index: np.ndarray) -> Rollup:
        return Rollup(**{k: v[index] for k, v in vars(self).items()})


def lowest(bits: np.ndarray) -> np.ndarray:
    """The index of each day map's lowest set bit (maps not zero)."""
    low: np.ndarray = np.bitwise_count((bits & (~bits + np.uint32(1))) - np.uint32(1))
    return low.astype(np.int64)


def highest(bits: np.ndarray) -> np.ndarray:
    """The index of each day map's highest set bit (maps not zero)."""
    smear = bits.copy()
    for shift in (1, 2, 4, 8, 16):
        smear |= smear >> np.uint32(shift)
    high: np.ndarray = np.bitwise_count(smear).astype(np.int64) - 1
    return high


def _blob(values: np.ndarray, dtype: np.dtype) -> bytes:
    """Little-endian bytes; all zeros as an empty blob."""
    return values.astype(dtype).tobytes() if values.any() else b""


def _column(blob: bytes, n: int, dtype: np.dtype) -> np.ndarray:
    return np.frombuffer(blob, dtype=dtype) if blob else np.zeros(n, dtype=dtype)


def month_range(month: str) -> tuple[int, int]:
    """First and last day ordinals of ``YYYY-MM``."""
    year, mon = int(month[:4]), int(month[5:7])
    first = dt.date(year, mon, 1)
    after = dt.date(year + (mon == 12), mon % 12 + 1, 1)
    return first.toordinal(), after.toordinal() - 1


def compute(
    conn: sqlite3.Connection, series_id: int, month: str, thin_of: ThinOf | None
) -> tuple[bytes, ...]:
    """One month's rollup from its blocks: the row's blobs, symbols first."""
    lo, hi = month_range(month)
    held = blocks.read(conn, "blocks", series_id, lo, hi).unique(0)
    ids, inverse = np.unique(held.symbol, return_inverse=True)
    bit = np.left_shift(np.uint32(1), (held.day - lo).astype(np.uint32))

    def days(where: np.ndarray | None) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.uint32)
        if where is None:
            np.bitwise_or.at(out, inverse, bit)
        elif where.any():
            np.bitwise_or.at(out, inverse[where], bit[where])
        return out

    bars = np.bincount(inverse, weights=held.bars, minlength=len(ids))
    rejected = np.bincount(inverse, weights=held.rejected, minlength=len(ids))
    return (
        ids.astype(_I4).tobytes(),
        days(None).astype(_U4).tobytes(),
        _blob(days(held.bars == 0), _U4),
        _blob(days(held.complete == 0), _U4),
        _blob(days(thin_of(held)) if thin_of else np.zeros(0), _U4),
        bars.astype(_I8).tobytes(),
        _blob(rejected, _I8),
    )


def read(
    conn: sqlite3.Connection,
    series_id: int,
    months: list[str],
    thin_of: ThinOf | None,
    thin_key: str | None,
    *,
    keep: Callable[[Callable[[sqlite3.Connection], None]], None] | None,
) -> Rollup:
    """The rollups of ``months``; those missing (or made with another thin key) are made from
    the blocks and, through ``keep`` (a write transaction), stored. Without ``thin_of`` any
    rollup will do, and one made here marks no day thin (key ``""``)."""
    rows = {
        str(m): (str(k), *blobs)
        for m, k, *blobs in conn.execute(
            "SELECT month, thin_key, symbols, held, empty, partial, thin, bars, rejected "
            "FROM rollups WHERE series_id=?",
            (series_id,),
        )
    }
    found: list[tuple[int, tuple[bytes, ...]]] = []
    for month in months:
        row = rows.get(month)
        if row is not None and (thin_key is None or row[0] == thin_key):
            found.append((month_range(month)[0], tuple(row[1:])))
            continue
        made: list[tuple[bytes, ...]] = []

        def make(
            db: sqlite3.Connection, month: str = month, made: list[tuple[bytes, ...]] = made
        ) -> None:
            blobs = compute(db, series_id, month, thin_of)
            db.execute(
                "INSERT OR REPLACE INTO rollups (series_id, month, thin_key, symbols, held, "
                "empty, partial, thin, bars, rejected) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (series_id, month, thin_key or "", *blobs),
            )
            made.append(blobs)

        if keep is None:
            made.append(compute(conn, series_id, month, thin_of))
        else:
            keep(make)  # read and stored in one transaction: no commit comes in between
        found.append((month_range(month)[0], made[0]))
    counts = np.array([len(b[0]) // 4 for _, b in found], dtype=np.int64)
    n = int(counts.sum())

    def joined(i: int, dtype: np.dtype) -> np.ndarray:
        return np.concatenate(
            [_column(b[i], int(c), dtype) for (_, b), c in zip(found, counts, strict=True)]
        ) if found else np.zeros(0, dtype=dtype)  # fmt: skip

    return Rollup(
        first=np.repeat(np.array([f for f, _ in found], dtype=np.int64), counts),
        symbol=np.frombuffer(b"".join(b[0] for _, b in found), dtype=_I4)
        if n
        else np.zeros(0, dtype=_I4),
        held=joined(1, _U4),
        empty=joined(2, _U4),
        partial=joined(3, _U4),
        thin=joined(4, _U4),
        bars=joined(5, _I8),
        rejected=joined(6, _I8),
    )
