"""The SQL predicate that names exactly a commit's (symbol, day) partitions.

A Delta overwrite with this predicate replaces the rows it matches and nothing else, and delta-rs
refuses new rows that do not match it. Symbols come from providers, so they are quoted as SQL
string literals (a quote doubled), never spliced in; days and months are formatted by us.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from marketpipe.model.values import Series
from marketpipe.storage.layout import month_key


def literal(value: str) -> str:
    """``value`` as a SQL string literal."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot be part of a symbol")
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(literal(v) for v in values)})"


def partitions(coverage: Mapping[str, Iterable[dt.date]]) -> str:
    """``month IN (...) AND ((symbol IN (...) AND day IN (...)) OR ...)``: symbols covering the
    same days share one term, so a rectangular unit is one term however many symbols it has."""
    groups: dict[tuple[dt.date, ...], list[str]] = {}
    for symbol, days in coverage.items():
        groups.setdefault(tuple(sorted(set(days))), []).append(symbol)
    groups.pop((), None)
    if not groups:
        raise ValueError("a commit covers no partition")
    months = sorted({month_key(d) for days in groups for d in days})
    terms = [
        f"({_in('symbol', sorted(symbols))} AND {_in('day', (d.isoformat() for d in days))})"
        for days, symbols in sorted(groups.items())
    ]
    return f"{_in('month', months)} AND ({' OR '.join(terms)})"


def of_series(series: Series) -> str:
    """The coverage table's rows of ``series``."""
    return " AND ".join(
        f"{column} = {literal(value)}"
        for column, value in (
            ("provider", series.provider),
            ("feed", series.feed),
            ("adjustment", series.adjustment),
            ("timeframe", series.timeframe.value),
        )
    )
