"""The catalog's blocks: a file's partitions of one day in one row, as arrays.

The ``parts`` table has a row per (symbol, day, file), which answers a commit's or a reader's
point questions by its keys. The questions over a whole range (planning a whole-market year:
2.5M partitions; ``mp status`` of twenty years: 50M) would cross into Python a row at a time
there, about half a microsecond each. A block holds the same facts for one file and one day as
four little-endian arrays (symbol ids ascending, bars, complete, rejected), so such a question
reads a few thousand rows and decodes them with numpy: one block a day per file, where a
whole-market file holds a few hundred symbols of one day.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import numpy as np

COLUMNS = """
    series_id INTEGER NOT NULL, day INTEGER NOT NULL, file_id INTEGER NOT NULL,
    session INTEGER NOT NULL, symbols BLOB NOT NULL, bars BLOB NOT NULL,
    complete BLOB NOT NULL, rejected BLOB NOT NULL,
    UNIQUE (series_id, day, file_id)
"""
# A rowid table, not WITHOUT ROWID: a block of a few hundred symbols is 2 KB, which a rowid
# table's page holds whole; keyed WITHOUT ROWID, each one spilled into an overflow page of its
# own (18 bytes a partition instead of 8, measured on twenty years of a whole market).

_I4 = np.dtype("<i4")
_U1 = np.dtype(np.uint8)
_U2 = np.dtype("<u2")


def rows(
    series_id: int, file_id: int, session: int, parts: Iterable[tuple[int, int, int, int, int]]
) -> list[tuple[int, int, int, int, bytes, bytes, bytes, bytes]]:
    """Block rows of one file from its ``(day, symbol id, bars, complete, rejected)``. An
    all-complete block keeps an empty ``complete``, one without rejected rows an empty
    ``rejected``: the usual block is eight bytes a partition."""
    table = np.array(list(parts), dtype=np.int64).reshape(-1, 5)
    if not len(table):
        return []
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    bounds = np.flatnonzero(np.diff(table[:, 0])) + 1
    out = []
    for chunk in np.split(table, bounds):
        complete, rejected = chunk[:, 3], np.minimum(chunk[:, 4], 2**31 - 1)
        out.append(
            (
                series_id,
                int(chunk[0, 0]),
                file_id,
                session,
                chunk[:, 1].astype(_I4).tobytes(),
                _bars_blob(chunk[:, 2]),
                b"" if complete.all() else complete.astype(_U1).tobytes(),
                rejected.astype(_I4).tobytes() if rejected.any() else b"",
            )
        )
    return out


def _bars_blob(bars: np.ndarray) -> bytes:
    """Bar counts as 16-bit integers when they all fit (a day's minute bars always do), else
    32-bit: a block of 256 symbols is then 1.5 KB, two to a page, where 2 KB took a page of
    its own (16 bytes a partition, measured)."""
    if len(bars) and int(bars.max()) < 2**16:
        return bytes(bars.astype(_U2).tobytes())
    return bytes(np.minimum(bars, 2**31 - 1).astype(_I4).tobytes())


def bars_of(blob: bytes, n: int) -> np.ndarray:
    """A block's bar counts (``n`` entries) from :func:`_bars_blob`'s bytes."""
    return np.frombuffer(blob, dtype=_U2 if len(blob) == 2 * n else _I4).astype(np.int32)


class Held:
    """Partitions as arrays: per entry (a symbol in a block) its ``symbol``, ``bars``,
    ``complete`` and ``rejected``; per block its day, file and session and how many entries
    it has. Twenty years of a whole market (50M entries) take about 650 MB."""

    def __init__(
        self,
        symbol: np.ndarray,
        bars: np.ndarray,
        complete: np.ndarray,
        rejected: np.ndarray,
        block_day: np.ndarray,
        block_file: np.ndarray,
        block_session: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        self.symbol, self.bars, self.complete, self.rejected = symbol, bars, complete, rejected
        self.block_day, self.block_file, self.block_session = block_day, block_file, block_session
        self.counts = counts

    def __len__(self) -> int:
        return len(self.symbol)

    def per_entry(self, values: np.ndarray) -> np.ndarray:
        """A per-block array repeated for each entry of its block."""
        return np.repeat(values, self.counts)

    @property
    def day(self) -> np.ndarray:
        return self.per_entry(self.block_day)

    def keep(self, mask: np.ndarray, symbol: np.ndarray | None = None) -> Held:
        """The entries where ``mask`` holds (``symbol``: new symbol codes for every entry)."""
        symbol = self.symbol if symbol is None else symbol
        if mask.all():
            return Held(
                symbol, self.bars, self.complete, self.rejected, self.block_day,
                self.block_file, self.block_session, self.counts,
            )  # fmt: skip
        starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        counts = np.add.reduceat(mask.astype(np.int64), starts) if len(starts) else self.counts
        full = counts > 0
        return Held(
            symbol[mask], self.bars[mask], self.complete[mask], self.rejected[mask],
            self.block_day[full], self.block_file[full], self.block_session[full], counts[full],
        )  # fmt: skip

    def unique(self, symbols: int) -> Held:
        """One entry per (symbol, day): a partition two files hold (a commit cut short before
        its clean-up) counts once, with the most bars and rejected rows, complete only if both
        are. Blocks are in day order, so each day of more than one block is checked alone (a
        few thousand of them; the rare day with a duplicate is merged)."""
        if not len(self):
            return self
        ends = np.cumsum(self.counts)
        day_starts = np.flatnonzero(np.diff(self.block_day, prepend=self.block_day[0] - 1))
        first_block = day_starts.tolist()
        last_block = (np.append(day_starts[1:], len(self.counts)) - 1).tolist()
        bars, complete, rejected = self.bars, self.complete, self.rejected
        keep: np.ndarray | None = None
        for b0, b1 in zip(first_block, last_block, strict=True):
            if b0 == b1:
                continue  # one block: its symbols are distinct
            a, b = int(ends[b0] - self.counts[b0]), int(ends[b1])
            if np.bincount(self.symbol[a:b], minlength=symbols).max(initial=0) < 2:
                continue
            if keep is None:
                keep = np.ones(len(self), dtype=bool)
                bars, complete, rejected = bars.copy(), complete.copy(), rejected.copy()
            order = a + np.argsort(self.symbol[a:b], kind="stable")
            key = self.symbol[order]
            group = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            kept = order[group]  # the first entry of each (symbol, day), in entry order
            bars[kept] = np.maximum.reduceat(bars[order], group)
            complete[kept] = np.minimum.reduceat(complete[order], group)
            rejected[kept] = np.maximum.reduceat(rejected[order], group)
            keep[order] = False
            keep[kept] = True
        if keep is None:
            return self
        merged = Held(
            self.symbol, bars, complete, rejected, self.block_day, self.block_file,
            self.block_session, self.counts,
        )  # fmt: skip
        return merged.keep(keep)


def _values(
    found: list[tuple[Any, ...]], i: int, counts: np.ndarray, dtype: np.dtype, empty: int
) -> np.ndarray:
    """Column ``i`` of the blocks, entry by entry; an empty blob stands for ``empty`` each."""
    if all(r[i] for r in found):
        return np.frombuffer(b"".join(r[i] for r in found), dtype=dtype)
    out = np.full(int(counts.sum()), empty, dtype=dtype)
    at = 0
    for r, n in zip(found, counts.tolist(), strict=True):
        if r[i]:
            out[at : at + n] = np.frombuffer(r[i], dtype=dtype)
        at += n
    return out


def _bars(found: list[tuple[Any, ...]], counts: np.ndarray) -> np.ndarray:
    """Every block's bar counts, entry by entry, as 32-bit integers."""
    widths = {len(r[4]) // max(int(n), 1) for r, n in zip(found, counts.tolist(), strict=True)}
    if widths <= {2}:
        return np.frombuffer(b"".join(r[4] for r in found), dtype=_U2).astype(np.int32)
    if widths <= {4}:
        return np.frombuffer(b"".join(r[4] for r in found), dtype=_I4)
    return np.concatenate(
        [bars_of(r[4], int(n)) for r, n in zip(found, counts.tolist(), strict=True)]
    )


def read(
    conn: sqlite3.Connection, table: str, series_id: int, lo: int = 0, hi: int = 2**62
) -> Held:
    """The partitions ``table`` (``blocks``) holds for ``series_id`` from day ``lo`` to ``hi``,
    in day order."""
    found = conn.execute(
        "SELECT day, file_id, session, symbols, bars, complete, rejected FROM "
        f"{table} WHERE series_id=? AND day BETWEEN ? AND ? ORDER BY day, file_id",
        (series_id, lo, hi),
    ).fetchall()
    counts = np.array([len(r[3]) // 4 for r in found], dtype=np.int64)
    return Held(
        symbol=np.frombuffer(b"".join(r[3] for r in found), dtype=_I4),
        bars=_bars(found, counts),
        complete=_values(found, 5, counts, _U1, 1),
        rejected=_values(found, 6, counts, _I4, 0),
        block_day=np.array([r[0] for r in found], dtype=np.int32),
        block_file=np.array([r[1] for r in found], dtype=np.int64),
        block_session=np.array([r[2] for r in found], dtype=np.uint8),
        counts=counts,
    )


def holding(
    conn: sqlite3.Connection, series_id: int, by_day: dict[int, set[int]]
) -> list[tuple[int, int, int, int, int]]:
    """``(day, symbol id, bars, complete, file id)`` of each stored partition among
    ``by_day`` (day ordinal -> symbol ids), from the blocks of those days."""
    found: list[tuple[int, int, int, int, int]] = []
    days = sorted(by_day)
    for start in range(0, len(days), 500):
        chunk = days[start : start + 500]
        for day, file_id, symbols, bars, complete in conn.execute(
            "SELECT day, file_id, symbols, bars, complete FROM blocks WHERE series_id=? "
            f"AND day IN ({','.join('?' * len(chunk))})",
            (series_id, *chunk),
        ):
            held = np.frombuffer(symbols, dtype=_I4)
            hit = np.flatnonzero(np.isin(held, list(by_day[int(day)])))
            if not len(hit):
                continue
            counts = bars_of(bars, len(held))[hit]
            flags = np.frombuffer(complete, dtype=_U1)[hit] if complete else np.ones(len(hit))
            found += [
                (int(day), int(held[i]), int(n), int(f), int(file_id))
                for i, n, f in zip(hit.tolist(), counts.tolist(), flags.tolist(), strict=True)
            ]
    return found
