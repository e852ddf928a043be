"""The ledger of corporate actions: versions kept, corrections readable as of a day, records that
make no sense set aside, and nothing a bar reader's glob would take for bars."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from marketpipe.model.actions import actions_table
from marketpipe.storage.ledger import Ledger
from marketpipe.storage.stores import LocalStore

D = dt.date


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(22), dt.UTC)


def split(ident: str, ex: dt.date, new: float, fetched: dt.date, **kw: Any) -> dict[str, Any]:
    return {"provider": "alpaca", "id": ident, "kind": "forward_split", "symbol": "NVDA",
            "ex_date": ex, "process_date": ex, "old_rate": 1.0, "new_rate": new,
            "fetched_at": at(fetched), "record": '{"as": "received"}', **kw}  # fmt: skip


def test_a_corrected_record_replaces_the_old_one_which_stays_readable_as_of(
    tmp_path: Path,
) -> None:
    ledger = Ledger(LocalStore(tmp_path, durable=False))
    first = ledger.add(actions_table([split("a1", D(2024, 6, 10), 4.0, D(2024, 6, 10))]))
    assert (first.new.num_rows, first.changed.num_rows) == (1, 0)
    again = ledger.add(actions_table([split("a1", D(2024, 6, 10), 4.0, D(2024, 6, 11))]))
    assert not again.any  # the same values fetched again are not a new version
    fixed = ledger.add(actions_table([split("a1", D(2024, 6, 10), 10.0, D(2024, 6, 12))]))
    assert fixed.changed["new_rate"].to_pylist() == [10.0]
    assert ledger.actions()["new_rate"].to_pylist() == [10.0]
    assert ledger.actions(as_of=D(2024, 6, 11))["new_rate"].to_pylist() == [4.0]
    assert ledger.actions(as_of=D(2024, 6, 9)).num_rows == 0  # not processed yet then
    assert ledger.versions().num_rows == 2
    assert len(list((tmp_path / "_marketpipe" / "actions").glob("*.arrow"))) == 2


def test_nonsense_is_set_aside_with_the_reason_and_never_applied(tmp_path: Path) -> None:
    ledger = Ledger(LocalStore(tmp_path, durable=False))
    added = ledger.add(
        actions_table(
            [
                split("ok", D(2024, 6, 10), 2.0, D(2024, 6, 10)),
                split("zero", D(2024, 6, 10), 0.0, D(2024, 6, 10)),
                split("no-ex", D(2024, 6, 10), 2.0, D(2024, 6, 10), ex_date=None),
            ]
        )
    )
    assert added.new["id"].to_pylist() == ["ok"]
    assert sorted(ledger.rejected()["reason"].to_pylist()) == [
        "a split ratio that is not positive and finite",
        "a split without an ex-date",
    ]
    assert ledger.actions()["id"].to_pylist() == ["ok"]


def test_symbols_select_old_and_new_names(tmp_path: Path) -> None:
    ledger = Ledger(LocalStore(tmp_path, durable=False))
    rename = {"provider": "fake", "id": "r1", "kind": "name_change", "symbol": "OLDCO",
              "new_symbol": "NEWCO", "ex_date": D(2024, 5, 1), "process_date": D(2024, 5, 1),
              "fetched_at": at(D(2024, 5, 1)), "record": "{}"}  # fmt: skip
    ledger.add(actions_table([rename, split("s1", D(2024, 6, 10), 2.0, D(2024, 6, 10))]))
    assert ledger.actions(symbols=["NEWCO"])["id"].to_pylist() == ["r1"]
    assert ledger.actions(symbols=["OLDCO", "NVDA"])["id"].to_pylist() == ["r1", "s1"]
    assert ledger.actions(provider="fake")["id"].to_pylist() == ["r1"]


def test_bar_readers_never_take_the_ledger_for_bars(tmp_path: Path) -> None:
    ledger = Ledger(LocalStore(tmp_path, durable=False))
    ledger.add(actions_table([split("a1", D(2024, 6, 10), 4.0, D(2024, 6, 10))]))
    bars = tmp_path / "provider=x" / "part.parquet"
    bars.parent.mkdir()
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"close": [1.0]}), bars)
    found = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/**/*.parquet')").fetchall()
    assert found == [(1,)]
