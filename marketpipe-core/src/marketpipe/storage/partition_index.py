"""Map every row of a bar table to its partition (symbol, New York day), in numpy.

Faster than building ``"SYMBOL|DAY"`` strings per row: the day comes from a binary search over the
days' New York midnights, the symbol from Arrow's dictionary encoding.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import pyarrow as pa

from marketpipe.model.calendar import ny_midnight_ns
from marketpipe.model.partition import PartitionKey
from marketpipe.model.schema import filled, symbol_codes


@attrs.frozen
class PartitionIndex:
    """``symbol[i]`` and ``day[i]`` index into ``symbols`` and ``days``; ``known[i]`` is False for
    a row whose symbol or day is not among them."""

    symbols: tuple[str, ...]
    days: tuple[dt.date, ...]
    symbol: np.ndarray
    day: np.ndarray
    known: np.ndarray

    def counts(self) -> dict[PartitionKey, int]:
        """Rows per known (symbol, day)."""
        width = len(self.days)
        flat = self.symbol[self.known] * width + self.day[self.known]
        totals = np.bincount(flat, minlength=len(self.symbols) * width)
        return {
            (self.symbols[i // width], self.days[i % width]): int(n)
            for i, n in enumerate(totals)
            if n
        }


def index_rows(table: pa.Table, symbols: Sequence[str], days: Sequence[dt.date]) -> PartitionIndex:
    day_list = sorted(set(days))
    symbol_list = list(dict.fromkeys(symbols))
    n = table.num_rows
    if n == 0 or not day_list or not symbol_list:
        empty = np.zeros(n, dtype=np.int64)
        return PartitionIndex(tuple(symbol_list), tuple(day_list), empty, empty, empty.astype(bool))
    midnights = np.array([ny_midnight_ns(d) for d in day_list], dtype=np.int64)
    next_midnights = np.array(
        [ny_midnight_ns(d + dt.timedelta(days=1)) for d in day_list], dtype=np.int64
    )
    ts = filled(table["timestamp"].cast(pa.int64()), -1)
    day = np.searchsorted(midnights, ts, side="right") - 1
    clipped = np.clip(day, 0, None)
    known = (day >= 0) & (ts < next_midnights[clipped])
    encoded = symbol_codes(table["symbol"])
    dictionary = encoded.dictionary.to_pylist()
    position = {s: i for i, s in enumerate(symbol_list)}
    lookup = np.array([position.get(s, -1) for s in dictionary] + [-1], dtype=np.int64)
    codes = filled(encoded.indices, len(dictionary))
    symbol = lookup[codes]
    known &= symbol >= 0
    return PartitionIndex(
        tuple(symbol_list), tuple(day_list), np.clip(symbol, 0, None), clipped, known
    )


def index_covered(table: pa.Table, coverage: Mapping[str, Sequence[dt.date]]) -> PartitionIndex:
    """``index_rows`` over a commit's coverage (symbol -> days), refusing a row outside it: a
    sink must never store bars of a partition the commit does not replace."""
    days = sorted({d for ds in coverage.values() for d in ds})
    index = index_rows(table, list(coverage), days)
    covered = np.zeros((len(index.symbols), len(index.days)), dtype=bool)
    day_pos = {d: i for i, d in enumerate(index.days)}
    for s_pos, symbol in enumerate(index.symbols):
        for day in coverage[symbol]:
            covered[s_pos, day_pos[day]] = True
    if not np.all(index.known & covered[index.symbol, index.day]):
        raise ValueError("bars outside the unit's coverage reached the sink")
    return index
