"""The overwrite predicate names exactly the covered partitions, whatever the symbols hold."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketpipe_delta import predicate

DAYS = [dt.date(2024, 1, 31), dt.date(2024, 2, 1), dt.date(2024, 2, 2)]
symbols = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)


def rows(keys: list[tuple[str, dt.date]], version: int) -> pa.Table:
    return pa.table(
        {
            "symbol": [s for s, _ in keys],
            "day": pa.array([d for _, d in keys], pa.date32()),
            "month": [f"{d:%Y-%m}" for _, d in keys],
            "version": [version] * len(keys),
        }
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(symbols, min_size=1, max_size=5, unique=True),
    chosen=st.data(),
)
def test_an_overwrite_by_predicate_replaces_exactly_the_covered_keys(
    names: list[str], chosen: st.DataObject
) -> None:
    every = [(s, d) for s in names for d in DAYS]
    covered = chosen.draw(st.lists(st.sampled_from(every), min_size=1, unique=True))
    coverage: dict[str, list[dt.date]] = {}
    for symbol, day in covered:
        coverage.setdefault(symbol, []).append(day)
    with tempfile.TemporaryDirectory() as folder:
        uri = str(Path(folder) / "t")
        write_deltalake(uri, rows(every, 1), partition_by=["month"])
        write_deltalake(
            uri,
            rows(covered, 2),
            mode="overwrite",
            predicate=predicate.partitions(coverage),
            partition_by=["month"],
        )
        got = DeltaTable(uri).to_pyarrow_table().to_pylist()
    found = sorted((r["symbol"], r["day"], r["version"]) for r in got)
    want = sorted((s, d, 2 if (s, d) in covered else 1) for s, d in every)
    assert found == want


def test_symbols_sharing_days_share_one_term() -> None:
    text = predicate.partitions({"A": [DAYS[0], DAYS[1]], "B": [DAYS[1], DAYS[0]], "C": [DAYS[2]]})
    assert text == (
        "month IN ('2024-01', '2024-02') AND "
        "((symbol IN ('A', 'B') AND day IN ('2024-01-31', '2024-02-01')) OR "
        "(symbol IN ('C') AND day IN ('2024-02-02')))"
    )


def test_a_quote_is_doubled_and_a_nul_refused() -> None:
    assert predicate.literal("O'X") == "'O''X'"
    with pytest.raises(ValueError, match="NUL"):
        predicate.literal("A\x00")
