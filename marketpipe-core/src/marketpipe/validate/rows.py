"""What every validator does with its rows, bars and ticks alike: a reason kept for each rejected
row (the first failure wins), and the checks they share: the symbol was asked, and no row comes
before the previous one of its symbol."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.schema import symbol_codes
from marketpipe.plugins.validator import ValidationResult


class Reasons:
    """A reason code a row of ``table``, the first failure kept (``reasons[code]``; 0 passes).

    A check's mask is kept and only added to the rows found bad; the codes a row are worked out
    when some row is bad, which most units have none of. Keeping a code column up to date at
    every check cost three passes over the rows a check, a fifth of a whole-market day's
    validation (bench_flatfiles)."""

    def __init__(self, table: pa.Table, reasons: Sequence[str]) -> None:
        self.table = table
        self.reasons = reasons
        self.bad = np.zeros(table.num_rows, dtype=bool)
        self._checks: list[tuple[np.ndarray, int]] = []

    def flag(self, mask: np.ndarray, reason: int) -> None:
        """Rows of ``mask`` fail with ``reason`` unless an earlier check failed them."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self._checks.append((mask, reason))
            self.bad |= mask

    @property
    def standing(self) -> np.ndarray:
        """The rows no check has failed so far."""
        return ~self.bad

    def codes(self) -> np.ndarray:
        codes = np.zeros(len(self.bad), dtype=np.int8)
        for mask, reason in reversed(self._checks):  # the earliest check written last wins
            codes[mask] = reason
        return codes

    def result(self, counted: dict[str, int] | None = None) -> ValidationResult:
        bad = self.bad
        if not bad.any():  # the usual case: no copy of a unit's rows
            rejected = self.table.schema.empty_table().append_column(
                "reason", pa.array([], pa.string())
            )
            return ValidationResult(self.table, rejected, counted or {})
        reason = pa.DictionaryArray.from_arrays(
            pa.array(self.codes()[bad], pa.int8()), pa.array(self.reasons, pa.string())
        ).cast(pa.string())
        rejected = self.table.filter(pa.array(bad)).append_column("reason", reason)
        return ValidationResult(self.table.filter(pa.array(~bad)), rejected, counted or {})


def requested(column: pa.ChunkedArray, symbols: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's symbol code (-1 for a null symbol) and whether its symbol is one of
    ``symbols``: through the column's dictionary, so a unit's few hundred names are looked up
    once, not each of its rows."""
    encoded = symbol_codes(column)
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False))
    known = pc.is_in(encoded.dictionary, value_set=pa.array(sorted(symbols), pa.string()))
    if encoded.null_count == 0 and pc.all(known).as_py() is not False:
        return codes, np.ones(len(codes), dtype=bool)  # the usual unit: only symbols it asked
    wanted = np.append(np.asarray(known.to_numpy(zero_copy_only=False), dtype=bool), False)
    return codes, wanted[codes]


def out_of_order(
    codes: np.ndarray, stamps: np.ndarray, alive: np.ndarray, *, equal_too: bool
) -> np.ndarray:
    """Rows (among the ``alive`` ones, in the rows' order) stamped before the previous alive
    row of their symbol, or at the same time when ``equal_too`` (a bar per timestamp;
    ticks may share one). A row rejected already does not make its successor look bad."""
    if alive.all() and (len(codes) < 2 or (codes[1:] >= codes[:-1]).all()):
        # Every row standing, grouped by symbol: the usual unit, compared in place.
        earlier = (stamps[1:] <= stamps[:-1]) if equal_too else (stamps[1:] < stamps[:-1])
        return np.concatenate(([False], (codes[1:] == codes[:-1]) & earlier))
    by_symbol = np.flatnonzero(alive)
    grouped = codes[by_symbol]
    if len(grouped) > 1 and not (grouped[1:] >= grouped[:-1]).all():
        # Rows come grouped by symbol (codes in order of first appearance) from nearly every
        # provider: then they need no sort.
        by_symbol = by_symbol[np.argsort(grouped, kind="stable")]
    s, t = codes[by_symbol], stamps[by_symbol]
    earlier = (t[1:] <= t[:-1]) if equal_too else (t[1:] < t[:-1])
    out = np.zeros(len(codes), dtype=bool)
    out[by_symbol[1:][(s[1:] == s[:-1]) & earlier]] = True
    return out
