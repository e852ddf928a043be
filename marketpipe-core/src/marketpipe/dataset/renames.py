"""Renames from the ledger: which names a company traded under, and since when.

A ``name_change`` action (``symbol`` the old name, ``new_symbol`` the new one, ``ex_date`` the
first day under the new name) links two names of one company. Readers follow the links back
(``read(symbols=["NEWCO"])`` takes OLDCO's bars before the rename); ``mp update`` follows them
forward (a stored OLDCO series goes on under NEWCO); ``mp status`` shows one line a company.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.actions import NAME_CHANGE

#: ``new name -> [(old name, first day of the new name)]``.
Renames = dict[str, list[tuple[str, dt.date]]]


def renames(actions: pa.Table) -> Renames:
    """The ledger's renames (``actions`` in the canonical schema), by new name."""
    out: Renames = {}
    found = actions.filter(pc.equal(actions["kind"], NAME_CHANGE))
    for row in found.select(["symbol", "new_symbol", "ex_date", "process_date"]).to_pylist():
        day = row["ex_date"] or row["process_date"]
        out.setdefault(row["new_symbol"], []).append((row["symbol"], day))
    return out


def earlier_names(symbol: str, known: Renames) -> list[tuple[str, dt.date]]:
    """The names ``symbol``'s company traded under before, each with the first day of the
    next name: ``[(OLDCO, rename day), ...]``, older first (renames of renames followed)."""
    chain: list[tuple[str, dt.date]] = []
    seen = {symbol}
    current = symbol
    while current in known:
        old, day = max(known[current], key=lambda r: r[1])
        if old in seen:
            break
        chain.append((old, day))
        seen.add(old)
        current = old
    return chain[::-1]


def successors(known: Renames) -> dict[str, tuple[str, dt.date]]:
    """``old name -> (the company's latest name, the day the old name ended)``."""
    step = {old: (new, day) for new, olds in known.items() for old, day in olds}
    out: dict[str, tuple[str, dt.date]] = {}
    for old, (new, day) in step.items():
        seen = {old, new}
        while new in step and step[new][0] not in seen:
            new = step[new][0]
            seen.add(new)
        out[old] = (new, day)
    return out


def companies(versions: pa.Table) -> dict[str, frozenset[str]]:
    """``name -> every name of its company`` from the ledger's renames (names never renamed
    are absent)."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    renamed = versions.filter(pc.equal(versions["kind"], NAME_CHANGE))
    for old, new in zip(
        renamed["symbol"].to_pylist(), renamed["new_symbol"].to_pylist(), strict=True
    ):
        if old and new:
            parent[root(old)] = root(new)
    groups: dict[str, set[str]] = defaultdict(set)
    for name in list(parent):
        groups[root(name)].add(name)
    return {name: frozenset(group) for group in groups.values() for name in group}


def follow_renames(
    starts: Mapping[str, dt.date],
    end: dt.date,
    renamed: Mapping[str, tuple[str, dt.date]],
) -> tuple[dict[str, dt.date], dict[str, dt.date], list[str]]:
    """``(starts, ends, notes)``: a stored symbol the ledger says was renamed is fetched up to
    the day before the rename, and its company goes on under the new name from that day."""
    out, ends, notes = dict(starts), {}, []
    for old, first in starts.items():
        if old not in renamed or renamed[old][1] > end:
            continue
        new, day = renamed[old]
        last = day - dt.timedelta(days=1)
        if first > last:
            del out[old]
        else:
            ends[old] = last
        if new not in out:
            out[new] = day
            notes.append(f"{old} was renamed {new} on {day}: its series goes on under {new}")
    return out, ends, notes
