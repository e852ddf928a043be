"""One-minute bars built from canonical trades (``marketpipe.model.ticks.TRADE_SCHEMA``).

The rules, those of the consolidated tape as the IEX bars already follow them:

- A ``canceled`` trade counts for nothing. A ``corrected`` one counts as printed.
- Every other trade counts toward ``volume`` (its size, summed, then rounded to whole shares
  half to even), ``trade_count`` and ``vwap``.
- Only some trades set ``open``, ``high``, ``low`` and ``close`` (:class:`TradeRules`): a trade
  with a condition of ``never_sets`` (odd lots) never does, one with a condition of
  ``sets_outside_regular`` (extended-hours prints) only in a minute outside the regular session.
  ``open`` is the first price-setting trade of the minute and ``close`` the last, in the
  provider's order (the order of the rows); a minute without one has null prices.
- ``vwap`` is the sum of price times size over the volume. When every price of the bar is a
  whole number of ten-thousandths of a dollar (as IEX's are) the sum is taken in those units, as
  whole numbers, which no order of summing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.calendar import SessionWindow
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe.model.ticks import CANCELED, TradeRules

MINUTE = 60_000_000_000
_TICK = 10_000  # ten-thousandths of a dollar


def _with_condition(conditions: pa.ChunkedArray, codes: frozenset[str]) -> np.ndarray:
    """Rows whose conditions hold one of ``codes``."""
    out = np.zeros(len(conditions), dtype=bool)
    if not codes or not len(conditions):
        return out
    lists = conditions.combine_chunks()
    flat = pc.list_flatten(lists)
    parents = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False))
    hit = np.asarray(
        pc.is_in(flat, value_set=pa.array(sorted(codes), pa.string()))
        .fill_null(False)
        .to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    out[parents[hit]] = True
    return out


def bars_from_trades(
    trades: pa.Table, rules: TradeRules, regular: Sequence[SessionWindow] = ()
) -> pa.Table:
    """The one-minute bars of ``trades`` (rows in the provider's order), sorted by symbol and
    minute, in the bar schema; ``regular`` lists the regular sessions of their days."""
    trades = trades.filter(pc.not_equal(trades["correction"], CANCELED))
    n = trades.num_rows
    # Symbols as their rank among the names, so that bars sort by symbol name.
    symbols = trades["symbol"].combine_chunks().dictionary_encode()
    by_name = pc.array_sort_indices(symbols.dictionary)
    names = symbols.dictionary.take(by_name)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.asarray(by_name.to_numpy(zero_copy_only=False))] = np.arange(len(names))
    code = rank[np.asarray(symbols.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    stamp = np.asarray(trades["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False))
    minute = stamp // MINUTE * MINUTE
    price = np.asarray(trades["price"].to_numpy(zero_copy_only=False), dtype=np.float64)
    size = np.asarray(trades["size"].to_numpy(zero_copy_only=False), dtype=np.float64)
    sets = ~_with_condition(trades["conditions"], rules.never_sets)
    outside_only = _with_condition(trades["conditions"], rules.sets_outside_regular)
    if outside_only.any():
        inside = np.zeros(n, dtype=bool)
        for window in regular:
            inside |= (minute >= window.start_ns) & (minute < window.end_ns)
        sets &= ~(outside_only & inside)

    order = np.lexsort((minute, code))  # stable: each minute's trades stay in row order
    code, minute, price, size, sets = (
        code[order],
        minute[order],
        price[order],
        size[order],
        sets[order],
    )
    if n:
        change = (code[1:] != code[:-1]) | (minute[1:] != minute[:-1])
        starts = np.flatnonzero(np.concatenate(([True], change)))
    else:
        starts = np.zeros(0, dtype=np.int64)
    count = np.diff(np.append(starts, n))
    volume = np.add.reduceat(size, starts) if n else np.zeros(0)
    ticks = price * _TICK
    whole = np.rint(ticks)
    # A price read as dollars (IEX's 5381 ten-thousandths: 0.5381) is within an ulp of the grid.
    near = np.abs(ticks - whole) <= 1e-6
    on_grid = np.logical_and.reduceat(near, starts) if n else np.zeros(0, bool)
    pv_ticks = np.add.reduceat(whole * size, starts) if n else np.zeros(0)
    pv = np.add.reduceat(price * size, starts) if n else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(on_grid, pv_ticks / (volume * _TICK), pv / volume)
    position = np.arange(n)
    first = np.minimum.reduceat(np.where(sets, position, n), starts) if n else starts
    last = np.maximum.reduceat(np.where(sets, position, -1), starts) if n else starts
    has = first < n
    first, last = np.where(has, first, 0), np.where(has, last, 0)
    high = np.maximum.reduceat(np.where(sets, price, -np.inf), starts) if n else np.zeros(0)
    low = np.minimum.reduceat(np.where(sets, price, np.inf), starts) if n else np.zeros(0)

    def priced(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float64(), mask=~has)

    return pa.table(
        {
            "symbol": names.take(pa.array(code[starts])),
            "timestamp": pa.array(minute[starts], pa.int64()).cast(
                BAR_SCHEMA.field("timestamp").type
            ),
            "open": priced(price[first] if n else price),
            "high": priced(high),
            "low": priced(low),
            "close": priced(price[last] if n else price),
            "volume": pa.array(np.rint(volume).astype(np.int64), pa.int64()),
            "trade_count": pa.array(count, pa.int64()),
            "vwap": pa.array(vwap, pa.float64(), mask=volume <= 0),
        },
        schema=BAR_SCHEMA.remove_metadata(),
    )
