"""MarketPipe: historical market bars, trades and quotes from pluggable providers into a
validated Parquet dataset.

``marketpipe.read(...)`` reads a dataset's bars (or trades, or quotes), adjusted at read time and as of any day
(:func:`marketpipe.dataset.read.read`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from marketpipe.model.version import __version__

if TYPE_CHECKING:  # pyarrow loads with the first read, not with ``import marketpipe``
    import pyarrow as pa


def read(
    data_dir: Path | str,
    *,
    provider: str,
    symbols: Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    timeframe: str | None = None,
    feed: str | None = None,
    adjustment: str = "raw",
    as_of: dt.date | str | None = None,
    kind: str = "bars",
) -> pa.Table:
    """Bars of ``symbols`` from ``start`` to ``end`` (inclusive New York days): columns
    ``symbol``, ``timestamp`` (UTC), ``open``, ``high``, ``low``, ``close``, ``volume``,
    ``trade_count``, ``vwap``, sorted by symbol then time. ``adjustment`` is ``raw``, ``split``,
    ``dividend`` or ``all``, derived from the stored raw bars and the dataset's ledger of
    corporate actions; ``as_of`` uses only what the ledger knew that day; renames resolve, so
    a company's bars come under the name asked for. A symbol with no bar in the range is
    warned about (``UserWarning``). ``timeframe``: ``1m`` by default.

    ``kind="trades"`` or ``"quotes"`` reads the ticks beneath the bars (their columns:
    :mod:`marketpipe.model.ticks`) with the same selection, renames and ``as_of``, in the
    provider's order within a symbol; ``adjustment`` ``split`` multiplies a price by the
    factor and a size by its inverse."""
    import warnings

    from marketpipe.dataset.read import read as read_dataset

    result = read_dataset(
        data_dir,
        provider=provider,
        symbols=symbols,
        start=start,
        end=end,
        timeframe=timeframe,
        feed=feed,
        adjustment=adjustment,
        as_of=as_of,
        kind=kind,
    )
    for note in result.notes:
        if note.endswith(f": no {kind} stored for these days"):  # a typo, or an old name
            warnings.warn(note, stacklevel=2)
    return result.table


def universe(
    data_dir: Path | str,
    *,
    provider: str,
    as_of: dt.date | str | None = None,
    traded: bool = False,
) -> pa.Table:
    """The symbols ``provider`` listed on ``as_of`` (default: today), under their names of
    that day, delisted ones included: columns ``symbol`` (that day's name), ``current_symbol``,
    ``name``, ``type``, ``primary_exchange``, ``active``, ``first_day``, ``last_day``,
    ``traded`` (bars stored that day; null when the dataset holds none of that day), ``figi``,
    ``cik``, ``id``. Its ``symbol`` column goes straight into :func:`read`. Needs the
    provider's instruments in the dataset (``mp symbols --provider P --fetch``) or, for a
    whole-market dataset, its bars of that day. ``traded=True`` keeps those with bars stored
    that day: a whole-market dataset's universe, listed and traded."""
    from marketpipe.dataset.universe import universe as dataset_universe

    return dataset_universe(data_dir, provider=provider, as_of=as_of, traded=traded)


__all__ = ["__version__", "read", "universe"]
