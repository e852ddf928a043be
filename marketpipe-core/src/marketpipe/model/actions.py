"""Corporate actions: one canonical Arrow schema for what every provider reports, and the check
of a batch of them before it may be kept or applied.

A split's ratio is ``new_rate / old_rate`` (2 and 1 for a 2-for-1 split, 1 and 50 for a 1-for-50
reverse split); a dividend's ``rate`` is cash (or, for a stock dividend, shares) per share. Kinds
without an ex-date (a rename, a merger) carry their effective or process date in ``ex_date``.
``record`` keeps the record as the provider sent it (JSON), so nothing it said is lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

FORWARD_SPLIT = "forward_split"
REVERSE_SPLIT = "reverse_split"
UNIT_SPLIT = "unit_split"
STOCK_DIVIDEND = "stock_dividend"
CASH_DIVIDEND = "cash_dividend"
SPIN_OFF = "spin_off"
NAME_CHANGE = "name_change"
CASH_MERGER = "cash_merger"
STOCK_MERGER = "stock_merger"
STOCK_AND_CASH_MERGER = "stock_and_cash_merger"
REDEMPTION = "redemption"
WORTHLESS_REMOVAL = "worthless_removal"
RIGHTS_DISTRIBUTION = "rights_distribution"
#: A kind a provider reported that MarketPipe does not know: kept, reported, never applied.
UNKNOWN = "unknown"

KINDS = (
    FORWARD_SPLIT,
    REVERSE_SPLIT,
    UNIT_SPLIT,
    STOCK_DIVIDEND,
    CASH_DIVIDEND,
    SPIN_OFF,
    NAME_CHANGE,
    CASH_MERGER,
    STOCK_MERGER,
    STOCK_AND_CASH_MERGER,
    REDEMPTION,
    WORTHLESS_REMOVAL,
    RIGHTS_DISTRIBUTION,
    UNKNOWN,
)
#: Kinds that change what earlier prices mean, by adjustment: ``split`` (shares) and
#: ``dividend`` (cash); ``all`` is both.
SPLIT_KINDS = frozenset({FORWARD_SPLIT, REVERSE_SPLIT, STOCK_DIVIDEND})
DIVIDEND_KINDS = frozenset({CASH_DIVIDEND})
#: Kinds recorded but never adjusted for (a read over one says so).
RECORDED_ONLY = frozenset(
    {
        UNIT_SPLIT,
        SPIN_OFF,
        CASH_MERGER,
        STOCK_MERGER,
        STOCK_AND_CASH_MERGER,
        REDEMPTION,
        WORTHLESS_REMOVAL,
        RIGHTS_DISTRIBUTION,
    }
)

ACTION_SCHEMA = pa.schema(
    [
        pa.field("provider", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("new_symbol", pa.string()),
        pa.field("ex_date", pa.date32()),
        pa.field("process_date", pa.date32(), nullable=False),
        pa.field("old_rate", pa.float64()),
        pa.field("new_rate", pa.float64()),
        pa.field("rate", pa.float64()),
        pa.field("cusip", pa.string()),
        pa.field("new_cusip", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("record", pa.string(), nullable=False),
    ],
    metadata={b"marketpipe.actions_schema_version": b"1"},
)
#: Records set aside keep whatever they had, nulls included, and the reason.
REJECTED_ACTION_SCHEMA = pa.schema(
    [field.with_nullable(True) for field in ACTION_SCHEMA],
    metadata=ACTION_SCHEMA.metadata,
).append(pa.field("reason", pa.string(), nullable=False))
_LOOSE = pa.schema([field.with_nullable(True) for field in ACTION_SCHEMA])

ACTION_COLUMNS = tuple(ACTION_SCHEMA.names)
_REQUIRED = tuple(f.name for f in ACTION_SCHEMA if not f.nullable and f.name != "record")


def actions_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """A table in :data:`ACTION_SCHEMA` from one mapping per action (missing optional fields
    are null)."""
    rows = list(records)
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in ACTION_COLUMNS} for row in rows], schema=ACTION_SCHEMA
    )


def _positive(value: Any) -> bool:
    return value is not None and math.isfinite(value) and value > 0


#: The share ratios a split or stock dividend can plausibly have (``new_rate / old_rate``;
#: ``1 + rate``): from a 1-for-100,000 reverse split to a 10,000-for-1 split. Beyond them a
#: record is a typo or a unit mistake (a ratio of 1e20 would make prices 1e-20 and overflow
#: volumes): set aside, never applied.
PLAUSIBLE_RATIO = (1e-5, 1e4)


def plausible_ratio(ratio: float) -> bool:
    """Whether ``ratio`` (shares after per share before) is a split anyone has made."""
    low, high = PLAUSIBLE_RATIO
    return math.isfinite(ratio) and low <= ratio <= high


def check_actions(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """``(valid, rejected)``: records that make no sense are set aside with the reason, never
    applied: an unknown kind name, a split without an ex-date or with a ratio that is not
    positive and finite or not plausible (:data:`PLAUSIBLE_RATIO`), a dividend without an ex-date or whose rate is not positive, a
    duplicate id (in one provider) with other values, a record without a provider, id, kind,
    symbol, process date or fetch time."""
    table = table.select(list(ACTION_COLUMNS)).cast(_LOOSE)
    reasons: list[str | None] = []
    seen: dict[tuple[str, str], tuple[Any, ...]] = {}
    twice: set[tuple[str, str]] = set()
    rows = table.to_pylist()  # actions are few: a record a row is fine here
    for row in rows:
        key = (row["provider"], row["id"])
        values = tuple(row[c] for c in ACTION_COLUMNS if c not in ("fetched_at", "record"))
        if key in seen and seen[key] != values:
            twice.add(key)
        seen.setdefault(key, values)
    for row in rows:
        kind = row["kind"]
        reason = None
        missing = [c for c in _REQUIRED if row[c] is None or row[c] == ""]
        if missing:
            reason = f"a record without {' or '.join(missing)}"
        elif (row["provider"], row["id"]) in twice:
            reason = "the same id twice with other values"
        elif kind not in KINDS:
            reason = f"unknown kind {kind!r}"
        elif kind in (FORWARD_SPLIT, REVERSE_SPLIT):
            if row["ex_date"] is None:
                reason = "a split without an ex-date"
            elif not (_positive(row["old_rate"]) and _positive(row["new_rate"])):
                reason = "a split ratio that is not positive and finite"
            elif not plausible_ratio(row["new_rate"] / row["old_rate"]):
                reason = (
                    f"an implausible split ratio {row['new_rate']:g}-for-{row['old_rate']:g} "
                    f"(outside {PLAUSIBLE_RATIO[0]:g} to {PLAUSIBLE_RATIO[1]:g})"
                )
        elif kind in (CASH_DIVIDEND, STOCK_DIVIDEND):
            if row["ex_date"] is None:
                reason = "a dividend without an ex-date"
            elif not _positive(row["rate"]):
                reason = "a dividend rate that is not positive and finite"
            elif kind == STOCK_DIVIDEND and not plausible_ratio(1 + row["rate"]):
                reason = f"an implausible stock dividend of {row['rate']:g} shares a share"
        elif kind == NAME_CHANGE and not row["new_symbol"]:
            reason = "a name change without a new symbol"
        reasons.append(reason)
    bad = pa.array([r is not None for r in reasons], pa.bool_())
    rejected = table.filter(bad).append_column(
        "reason", pa.array([r for r in reasons if r is not None], pa.string())
    )
    valid = table.filter(pc.invert(bad)).cast(ACTION_SCHEMA)
    return valid, rejected.cast(REJECTED_ACTION_SCHEMA)


def describe(row: dict[str, object]) -> str:
    """One line for an action: ``NVDA forward split 10-for-1, ex 2024-07-15``."""
    kind = str(row["kind"])
    what = kind.replace("_", " ")
    if kind in ("forward_split", "reverse_split"):
        what += f" {row['new_rate']:g}-for-{row['old_rate']:g}"
    elif row.get("rate") is not None:
        what += f" {row['rate']:g}"
    if row.get("new_symbol"):
        what += f" to {row['new_symbol']}"
    return f"{row['symbol']} {what}, ex {row['ex_date'] or row['process_date']}"
