"""Checks every validator makes of its rows, bars and ticks alike: the symbol was asked, and no
row comes before the previous one of its symbol."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.schema import symbol_codes


def requested(column: pa.ChunkedArray, symbols: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's symbol code (-1 for a null symbol) and whether its symbol is one of
    ``symbols``: through the column's dictionary, so a unit's few hundred names are looked up
    once, not each of its rows."""
    encoded = symbol_codes(column)
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False))
    known = pc.is_in(encoded.dictionary, value_set=pa.array(sorted(symbols), pa.string()))
    wanted = np.append(np.asarray(known.to_numpy(zero_copy_only=False), dtype=bool), False)
    return codes, wanted[codes]


def out_of_order(
    codes: np.ndarray, stamps: np.ndarray, alive: np.ndarray, *, equal_too: bool
) -> np.ndarray:
    """Rows (among the ``alive`` ones, in the rows' order) stamped before the previous alive
    row of their symbol, or at the same time when ``equal_too`` (a bar per timestamp;
    ticks may share one). A row rejected already does not make its successor look bad."""
    standing = np.flatnonzero(alive)
    by_symbol = standing[np.argsort(codes[standing], kind="stable")]
    s, t = codes[by_symbol], stamps[by_symbol]
    earlier = (t[1:] <= t[:-1]) if equal_too else (t[1:] < t[:-1])
    out = np.zeros(len(codes), dtype=bool)
    out[by_symbol[1:][(s[1:] == s[:-1]) & earlier]] = True
    return out
