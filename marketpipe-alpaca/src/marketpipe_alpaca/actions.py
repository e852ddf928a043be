"""Alpaca's ``GET /v1/corporate-actions``, parsed into MarketPipe's canonical action schema.

The answer groups records by type (``{"corporate_actions": {"forward_splits": [...], ...},
"next_page_token": ...}``), each type with its own field names. Every documented type maps to a
canonical kind; the company a record is about goes to ``symbol`` (the old name of a rename, the
source of a spin-off, the acquiree of a merger) and the other name to ``new_symbol``. Kinds with
no ex-date carry their effective date, else their process date, in ``ex_date``. A type this code
does not know is kept with kind ``unknown`` (and the type in the record) rather than dropped.

Nothing in a record is trusted: a field of the wrong type is null, and the ledger's check then
sets the record aside with the reason (:func:`marketpipe.model.actions.check_actions`). A record
without an ``id`` (older answers) gets one derived from its type and content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from marketpipe.fetch import MalformedResponseError

PATH = "/v1/corporate-actions"
PAGE_LIMIT = 1000
#: Alpaca's type keys, and the canonical kind of each.
TYPES = {
    "forward_splits": "forward_split",
    "reverse_splits": "reverse_split",
    "unit_splits": "unit_split",
    "stock_dividends": "stock_dividend",
    "cash_dividends": "cash_dividend",
    "spin_offs": "spin_off",
    "name_changes": "name_change",
    "cash_mergers": "cash_merger",
    "stock_mergers": "stock_merger",
    "stock_and_cash_mergers": "stock_and_cash_merger",
    "redemptions": "redemption",
    "worthless_removals": "worthless_removal",
    "rights_distributions": "rights_distribution",
}
#: Per type: the canonical field each Alpaca field fills (first present wins).
_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "forward_splits": {"symbol": ("symbol",), "cusip": ("cusip",), "old_rate": ("old_rate",),
                       "new_rate": ("new_rate",), "ex_date": ("ex_date",)},
    "reverse_splits": {"symbol": ("symbol",), "cusip": ("old_cusip", "cusip"),
                       "new_cusip": ("new_cusip",), "old_rate": ("old_rate",),
                       "new_rate": ("new_rate",), "ex_date": ("ex_date",)},
    "unit_splits": {"symbol": ("old_symbol",), "new_symbol": ("new_symbol",),
                    "cusip": ("old_cusip",), "new_cusip": ("new_cusip",),
                    "old_rate": ("old_rate",), "new_rate": ("new_rate",),
                    "ex_date": ("effective_date", "ex_date")},
    "stock_dividends": {"symbol": ("symbol",), "cusip": ("cusip",), "rate": ("rate",),
                        "ex_date": ("ex_date",)},
    "cash_dividends": {"symbol": ("symbol",), "cusip": ("cusip",), "rate": ("rate",),
                       "ex_date": ("ex_date",)},
    "spin_offs": {"symbol": ("source_symbol",), "new_symbol": ("new_symbol",),
                  "cusip": ("source_cusip",), "new_cusip": ("new_cusip",),
                  "old_rate": ("source_rate",), "new_rate": ("new_rate",),
                  "ex_date": ("ex_date",)},
    "name_changes": {"symbol": ("old_symbol",), "new_symbol": ("new_symbol",),
                     "cusip": ("old_cusip",), "new_cusip": ("new_cusip",),
                     "ex_date": ("process_date",)},
    "cash_mergers": {"symbol": ("acquiree_symbol",), "new_symbol": ("acquirer_symbol",),
                     "cusip": ("acquiree_cusip",), "new_cusip": ("acquirer_cusip",),
                     "rate": ("rate",), "ex_date": ("effective_date",)},
    "stock_mergers": {"symbol": ("acquiree_symbol",), "new_symbol": ("acquirer_symbol",),
                      "cusip": ("acquiree_cusip",), "new_cusip": ("acquirer_cusip",),
                      "old_rate": ("acquiree_rate",), "new_rate": ("acquirer_rate",),
                      "ex_date": ("effective_date",)},
    "stock_and_cash_mergers": {"symbol": ("acquiree_symbol",),
                               "new_symbol": ("acquirer_symbol",),
                               "cusip": ("acquiree_cusip",), "new_cusip": ("acquirer_cusip",),
                               "old_rate": ("acquiree_rate",), "new_rate": ("acquirer_rate",),
                               "rate": ("cash_rate",), "ex_date": ("effective_date",)},
    "redemptions": {"symbol": ("symbol",), "cusip": ("cusip",), "rate": ("rate",),
                    "ex_date": ("process_date",)},
    "worthless_removals": {"symbol": ("symbol",), "cusip": ("cusip",),
                           "ex_date": ("process_date",)},
    "rights_distributions": {"symbol": ("source_symbol",), "new_symbol": ("new_symbol",),
                             "cusip": ("source_cusip",), "new_cusip": ("new_cusip",),
                             "rate": ("rate",), "ex_date": ("ex_date",)},
}  # fmt: skip
#: An unknown type: the fields tried, in order, for the company and the day.
_UNKNOWN_FIELDS = {
    "symbol": ("symbol", "old_symbol", "source_symbol", "acquiree_symbol"),
    "new_symbol": ("new_symbol", "acquirer_symbol"),
    "cusip": ("cusip", "old_cusip", "source_cusip", "acquiree_cusip"),
    "new_cusip": ("new_cusip", "acquirer_cusip"),
    "old_rate": ("old_rate",),
    "new_rate": ("new_rate",),
    "rate": ("rate",),
    "ex_date": ("ex_date", "effective_date", "process_date"),
}
_TEXT = ("symbol", "new_symbol", "cusip", "new_cusip")
_NUMBERS = ("old_rate", "new_rate", "rate")
_MAX_TEXT = 64


def _text(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= _MAX_TEXT and value.isprintable():
        return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _first(record: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None


def parse_record(type_key: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """One Alpaca record as a canonical row (without ``provider`` and ``fetched_at``)."""
    fields = _FIELDS.get(type_key, _UNKNOWN_FIELDS)
    row: dict[str, Any] = dict.fromkeys(_UNKNOWN_FIELDS)
    row["kind"] = TYPES.get(type_key, "unknown")
    for name, keys in fields.items():
        value = _first(record, keys)
        if name in _TEXT:
            row[name] = _text(value)
        elif name in _NUMBERS:
            row[name] = _number(value)
        else:
            row[name] = _date(value)
    row["process_date"] = _date(record.get("process_date"))
    kept = dict(record) if type_key in TYPES else {"type": type_key, **record}
    text = json.dumps(kept, sort_keys=True, default=str)
    ident = _text(record.get("id"))
    if ident is None:
        ident = "sha1:" + hashlib.sha1(f"{type_key}|{text}".encode()).hexdigest()
    row["id"] = ident
    row["record"] = text
    return row


def parse_page(body: bytes) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """``(rows, unknown type keys, next page token)`` from one answer."""
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedResponseError("alpaca sent corporate actions that are not JSON") from None
    if not isinstance(data, dict):
        raise MalformedResponseError("alpaca sent corporate actions that are not a JSON object")
    groups = data.get("corporate_actions")
    if groups is None:
        groups = {}
    if not isinstance(groups, dict):
        raise MalformedResponseError("alpaca sent corporate_actions that is not an object")
    token = data.get("next_page_token")
    if token is not None and not isinstance(token, str):
        raise MalformedResponseError("alpaca sent a next_page_token that is not text")
    rows: list[dict[str, Any]] = []
    unknown: list[str] = []
    for type_key, records in groups.items():
        if records is None:
            continue
        if not isinstance(records, list):
            raise MalformedResponseError(f"alpaca sent {type_key!r} that is not a list")
        if type_key not in TYPES:
            unknown.append(str(type_key)[:_MAX_TEXT])
        for record in records:
            if not isinstance(record, dict):
                raise MalformedResponseError(
                    f"alpaca sent a {type_key!r} record that is not an object"
                )
            rows.append(parse_record(str(type_key)[:_MAX_TEXT], record))
    return rows, unknown, token or None
