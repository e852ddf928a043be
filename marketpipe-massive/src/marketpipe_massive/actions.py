"""Massive's reference data in MarketPipe's canonical schemas: splits, dividends and ticker
changes as corporate actions, tickers as instruments.

- ``/stocks/v1/splits``: ``forward_split`` and ``reverse_split`` keep ``split_from`` shares
  before and ``split_to`` after (old and new rate); a ``stock_dividend`` of ``split_from`` to
  ``split_to`` is a dividend of ``split_to / split_from - 1`` shares a share.
- ``/stocks/v1/dividends``: cash dividends, ``cash_amount`` a share on ``ex_dividend_date``
  (a regular and a special one on one day are two records, by their ids).
- ticker events: each change of a company's ticker is a ``name_change`` on its date.

Massive's ``historical_adjustment_factor`` of a split is the product of ``split_from /
split_to`` over it and every later split of the ticker; MarketPipe adjusts with its own
arithmetic over the ledger, and says where the two disagree.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from marketpipe.model.actions import (
    CASH_DIVIDEND,
    FORWARD_SPLIT,
    NAME_CHANGE,
    REVERSE_SPLIT,
    STOCK_DIVIDEND,
    UNKNOWN,
)

SPLIT_KINDS = {
    "forward_split": FORWARD_SPLIT,
    "reverse_split": REVERSE_SPLIT,
    "stock_dividend": STOCK_DIVIDEND,
}


def _day(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def split_rows(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for record in results:
        kind = SPLIT_KINDS.get(str(record.get("adjustment_type")), UNKNOWN)
        day = _day(record.get("execution_date"))
        before, after = _number(record.get("split_from")), _number(record.get("split_to"))
        row: dict[str, Any] = {
            "id": f"split:{record.get('id')}",
            "kind": kind,
            "symbol": _text(record.get("ticker")),
            "ex_date": day,
            "process_date": day,
            "record": json.dumps(record, sort_keys=True),
        }
        if kind == STOCK_DIVIDEND:
            row["rate"] = after / before - 1 if before and after else None
        else:
            row["old_rate"], row["new_rate"] = before, after
        rows.append(row)
    return rows


def dividend_rows(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for record in results:
        day = _day(record.get("ex_dividend_date"))
        usd = str(record.get("currency") or "USD").upper() == "USD"
        rows.append(
            {
                "id": f"dividend:{record.get('id')}",
                # a dividend in another currency is kept, never applied to dollar prices
                "kind": CASH_DIVIDEND if usd else UNKNOWN,
                "symbol": _text(record.get("ticker")),
                "ex_date": day,
                "process_date": _day(record.get("declaration_date")) or day,
                "rate": _number(record.get("cash_amount")),
                "record": json.dumps(record, sort_keys=True),
            }
        )
    return rows


def _rename(old: str, new: str, day: dt.date, record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": f"rename:{old}:{new}:{day}",
        "kind": NAME_CHANGE,
        "symbol": old,
        "new_symbol": new,
        "ex_date": day,
        "process_date": day,
        "record": json.dumps({**record, "from": old, "to": new, "date": str(day)}),
    }


def rename_rows(history: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A ``name_change`` for each change in a company's ticker history."""
    if not history or not isinstance(history.get("events"), list):
        return []
    names = []
    for event in history["events"]:
        if not isinstance(event, dict) or event.get("type") != "ticker_change":
            continue
        change = event.get("ticker_change")
        day = _day(event.get("date"))
        ticker = _text(change.get("ticker")) if isinstance(change, dict) else None
        if day is not None and ticker is not None:
            names.append((day, ticker))
    names.sort()
    rows = []
    for (_, old), (day, new) in itertools.pairwise(names):
        if old != new:
            rows.append(_rename(old, new, day, {"name": history.get("name")}))
    return rows


def renames_from_tickers(tickers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Renames read off the tickers list (active and delisted): tickers that share a composite
    FIGI are one company's names, each delisted on the day the next began. Two list requests
    for the whole market, where the ticker events cost one request a symbol."""
    by_figi: dict[str, list[tuple[dt.date, str]]] = {}
    for record in tickers:
        figi, ticker = _text(record.get("composite_figi")), _text(record.get("ticker"))
        if figi is None or ticker is None:
            continue
        ended = _day(record.get("delisted_utc")) or dt.date.max  # the current name last
        by_figi.setdefault(figi, []).append((ended, ticker))
    rows = []
    for figi, names in by_figi.items():
        names.sort()
        for (day, old), (_, new) in itertools.pairwise(names):
            if old != new and day != dt.date.max:
                rows.append(_rename(old, new, day, {"composite_figi": figi}))
    return rows


def factor_disagreements(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """Where a split's ``historical_adjustment_factor`` differs (by more than 1e-6 relative)
    from the product of ``split_from / split_to`` over it and the ticker's later splits
    (``results`` must hold every later split: ask without an upper date)."""
    by_ticker: dict[str, list[Mapping[str, Any]]] = {}
    for record in results:
        if record.get("adjustment_type") in ("forward_split", "reverse_split"):
            by_ticker.setdefault(str(record.get("ticker")), []).append(record)
    lines = []
    for ticker, splits in sorted(by_ticker.items()):
        splits.sort(key=lambda r: str(r.get("execution_date")))
        product = 1.0
        for record in reversed(splits):
            before, after = _number(record.get("split_from")), _number(record.get("split_to"))
            if not before or not after:
                continue
            product *= before / after
            theirs = _number(record.get("historical_adjustment_factor"))
            if theirs is not None and not math.isclose(theirs, product, rel_tol=1e-6):
                lines.append(
                    f"massive: {ticker} split of {record.get('execution_date')}: Massive's "
                    f"historical adjustment factor {theirs:g} differs from the splits' own "
                    f"product {product:g}; MarketPipe adjusts with its own arithmetic"
                )
    return lines


def instrument_rows(
    results: Iterable[Mapping[str, Any]], fetched: dt.datetime
) -> list[dict[str, Any]]:
    """Tickers of ``/v3/reference/tickers`` as instruments. Massive's list has no listing day
    (only a ticker's details do); a delisted ticker's last day is the session before its
    ``delisted_utc``. An instrument is keyed by its composite FIGI, else by its ticker (and
    delisting, so a ticker used again later is another instrument)."""
    from marketpipe.model.calendar import nyse_calendar

    calendar = nyse_calendar()
    rows = []
    for record in results:
        ticker = _text(record.get("ticker"))
        delisted = _day(record.get("delisted_utc"))
        last = None
        if delisted is not None:
            before = [delisted - dt.timedelta(days=n) for n in range(1, 11)]
            last = next((d for d in before if calendar.is_session(d)), before[0])
        figi = _text(record.get("composite_figi"))
        rows.append(
            {
                "id": figi or f"ticker:{ticker}" + (f":{delisted}" if delisted else ""),
                "symbol": ticker,
                "name": _text(record.get("name")),
                "type": _text(record.get("type")),
                "primary_exchange": _text(record.get("primary_exchange")),
                "active": record.get("active") is True,
                "first_day": None,
                "last_day": last,
                "figi": figi,
                "cik": _text(record.get("cik")),
                "provider": "massive",
                "fetched_at": fetched,
                "record": json.dumps(record, sort_keys=True),
            }
        )
    return rows
