"""The catalog: an index of the files, never ahead of them, rebuilt when missing, put right when
stale; and the calendar's last completed session."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from core_helpers import commit, simple_bars
from marketpipe.ingestion import Session, Timeframe
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Series
from marketpipe.plugins.sink import CommitRequest
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.parquet_sink import ParquetSink

CAL = nyse_calendar()
D1, D2, D3 = dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)
SERIES = Series("fake", "sim", "raw", Timeframe.M1)


def stored(catalog: Catalog, symbols: list[str], days: list[dt.date], **kw: object) -> set:
    mask = catalog.stored_mask(SERIES, symbols, days, **kw)  # type: ignore[arg-type]
    return {(symbols[i], days[j]) for i, j in zip(*np.nonzero(mask), strict=True)}


def test_commits_are_indexed_with_bars_completeness_and_file(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    paths = commit(sink, ["AAPL", "MSFT"], [D1, D2], partial={"MSFT": (D2,)})
    found = {(p.symbol, p.day): p for p in sink.catalog.lookup(SERIES, list(paths))}
    assert {k: (p.bars, p.complete, p.path) for k, p in found.items()} == {
        k: (390, k != ("MSFT", D2), paths[k]) for k in paths
    }
    everything = [(s, d) for s in ("AAPL", "MSFT") for d in (D1, D2)]
    assert stored(sink.catalog, ["AAPL", "MSFT", "IBM"], [D1, D2, D3]) == set(everything) - {
        ("MSFT", D2)  # partial: fetched again
    }
    assert sink.catalog.spans(SERIES) == {"AAPL": (D1, D2), "MSFT": (D1, D2)}


def test_another_adjustment_is_another_series(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL"], [D1])
    commit(sink, ["AAPL"], [D1], job="split", adjustment="split")
    assert len(list(tmp_path.glob("bars/provider=fake/feed=sim/adjustment=*/**/*.parquet"))) == 2
    split = Series("fake", "sim", "split", Timeframe.M1)
    assert sink.catalog.series() == [SERIES, split]
    assert sink.catalog.stored_mask(split, ["AAPL"], [D1]).all()


def test_a_missing_catalog_is_rebuilt_from_the_files(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL", "MSFT"], [D1, D2], partial={"AAPL": (D2,)})
    sink.close()
    for leftover in (tmp_path / "_marketpipe").glob("catalog.sqlite*"):
        leftover.unlink()
    catalog = Catalog(tmp_path)
    assert stored(catalog, ["AAPL", "MSFT"], [D1, D2]) == set()  # nothing indexed yet
    catalog.sync(SERIES)
    assert stored(catalog, ["AAPL", "MSFT"], [D1, D2]) == {
        ("AAPL", D1),
        ("MSFT", D1),
        ("MSFT", D2),
    }


def test_a_damaged_catalog_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL"], [D1])
    sink.close()
    path = tmp_path / "_marketpipe" / "catalog.sqlite"
    for extra in path.parent.glob("catalog.sqlite-*"):
        extra.unlink()
    path.write_bytes(b"this is not a database" * 100)
    catalog = Catalog(tmp_path)
    catalog.sync(SERIES)
    assert stored(catalog, ["AAPL"], [D1]) == {("AAPL", D1)}
    assert (path.parent / "catalog.sqlite.damaged").is_file()


def test_a_stale_catalog_is_put_right_deleted_added_and_rewritten_files(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    paths = commit(sink, ["AAPL"], [D1, D2])
    other = ParquetSink(tmp_path / "elsewhere")
    extra = commit(other, ["MSFT"], [D3], job="job2")
    (tmp_path / paths[("AAPL", D1)]).unlink()  # by hand, behind the catalog's back
    shutil.copy(tmp_path / "elsewhere" / extra[("MSFT", D3)], tmp_path / extra[("MSFT", D3)])
    assert stored(sink.catalog, ["AAPL", "MSFT"], [D1, D2, D3]) == {("AAPL", D1), ("AAPL", D2)}
    sink.catalog.sync(SERIES, ["2024-03"])
    assert stored(sink.catalog, ["AAPL", "MSFT"], [D1, D2, D3]) == {("MSFT", D3)}


def test_a_partition_in_two_files_or_in_a_file_of_the_asking_job_is_not_counted_stored(
    tmp_path: Path,
) -> None:
    sink = ParquetSink(tmp_path)
    paths = commit(sink, ["AAPL"], [D1])
    original = tmp_path / paths[("AAPL", D1)]
    shutil.copy(original, original.with_name("part-copy-000000000000.parquet"))
    sink.catalog.sync(SERIES)
    assert stored(sink.catalog, ["AAPL"], [D1]) == set()  # fetched again; the commit cleans up
    commit(sink, ["AAPL"], [D1], job="job9")
    (left,) = original.parent.glob("*.parquet")  # both copies' rows were replaced
    assert left.name.startswith("part-job9-")
    assert stored(sink.catalog, ["AAPL"], [D1]) == {("AAPL", D1)}
    assert stored(sink.catalog, ["AAPL"], [D1], other_than_job="job9") == set()


def test_the_commit_asks_the_catalog_instead_of_reading_every_footer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ParquetSink(tmp_path)
    for i, day in enumerate([D1, D2, D3]):
        commit(sink, ["AAPL"], [day], job=f"job{i}")
    import marketpipe.storage.holdings as holdings_module

    reads: list[str] = []
    real = holdings_module.read_footer
    monkeypatch.setattr(
        holdings_module, "read_footer", lambda store, rel: reads.append(rel) or real(store, rel)
    )
    commit(sink, ["AAPL"], [D2], job="again")
    assert reads == []  # the folder had not changed behind the catalog's back
    (tmp_path / sink.catalog.files_holding(SERIES, [("AAPL", D1)]).pop()).touch()
    sink.catalog.sync(SERIES)
    assert len(reads) == 1  # a file changed behind its back is read again, and only that one


def test_extended_bars_hold_the_regular_session_but_not_the_other_way_round(
    tmp_path: Path,
) -> None:
    sink = ParquetSink(tmp_path)
    table = pa.Table.from_batches([simple_bars("AAPL", CAL.window(D1, Session.EXTENDED))])
    sink.commit(
        CommitRequest(
            table=table,
            coverage={"AAPL": (D1,)},
            provider="fake",
            feed="sim",
            timeframe=Timeframe.M1,
            job_id="ext",
            session=Session.EXTENDED,
        )
    )
    commit(sink, ["MSFT"], [D1])
    assert stored(sink.catalog, ["AAPL", "MSFT"], [D1], session=Session.REGULAR) == {
        ("AAPL", D1),
        ("MSFT", D1),
    }
    assert stored(sink.catalog, ["AAPL", "MSFT"], [D1], session=Session.EXTENDED) == {("AAPL", D1)}


@pytest.mark.parametrize(
    ("now", "delay", "expected"),
    [
        ("2024-03-12T20:00:00+00:00", 0, dt.date(2024, 3, 12)),  # 16:00 EDT: closed
        ("2024-03-12T19:59:59+00:00", 0, dt.date(2024, 3, 11)),
        ("2024-03-12T20:10:00+00:00", 15, dt.date(2024, 3, 11)),  # the provider's delay
        ("2024-03-12T20:15:00+00:00", 15, dt.date(2024, 3, 12)),
        ("2024-03-16T12:00:00+00:00", 15, dt.date(2024, 3, 15)),  # Saturday
        ("2024-11-29T18:30:00+00:00", 0, dt.date(2024, 11, 29)),  # 13:30 EST: early close
        ("2024-12-25T23:00:00+00:00", 0, dt.date(2024, 12, 24)),  # holiday
    ],
)
def test_the_last_completed_session(now: str, delay: int, expected: dt.date) -> None:
    moment = dt.datetime.fromisoformat(now)
    assert CAL.last_completed(Session.REGULAR, moment, dt.timedelta(minutes=delay)) == expected


def test_a_sync_waits_for_a_month_folder_without_holding_the_catalog(tmp_path: Path) -> None:
    """A commit takes a month folder's lock, then the catalog's; a sync (asked by another unit
    of the job) must not hold the catalog while it waits for that folder, or the two units
    wait for each other forever (seen: a whole-market ingest hung with 2 units in flight)."""
    import threading

    from marketpipe.storage.layout import month_key

    sink = ParquetSink(tmp_path)
    paths = commit(sink, ["AAPL"], [D1])
    # A file the catalog does not know yet: the sync has to take the folder to read it.
    held = tmp_path / paths[("AAPL", D1)]
    shutil.copy(held, held.with_name("part-copy-000000000000.parquet"))
    catalog = sink.catalog
    month = month_key(D1)
    real_lock = catalog.holdings.lock
    waiting = threading.Event()

    def lock(series: Series, folder: str):  # type: ignore[no-untyped-def]
        waiting.set()
        return real_lock(series, folder)

    catalog.holdings.lock = lock  # type: ignore[method-assign]
    with real_lock(SERIES, month):  # a commit in flight holds the folder
        syncing = threading.Thread(target=catalog.sync, args=(SERIES, [month]))
        syncing.start()
        assert waiting.wait(10)
        free = catalog._lock.acquire(timeout=10)  # what the commit needs next
        assert free, "the sync holds the catalog while it waits for the folder"
        catalog._lock.release()
    syncing.join(10)
    assert not syncing.is_alive()


def test_a_folder_in_step_with_the_catalog_is_not_locked_to_be_synced(tmp_path: Path) -> None:
    """A read of twenty years syncs 240 month folders: one the catalog already knows file for
    file is listed, not locked."""
    sink = ParquetSink(tmp_path)
    paths = commit(sink, ["AAPL"], [D1, D2])
    commit(sink, ["AAPL"], [dt.date(2024, 4, 1)])
    taken: list[str] = []
    real_lock = sink.catalog.holdings.lock

    def lock(series: Series, folder: str):  # type: ignore[no-untyped-def]
        taken.append(folder)
        return real_lock(series, folder)

    sink.catalog.holdings.lock = lock  # type: ignore[method-assign]
    sink.catalog.sync(SERIES, ["2024-03", "2024-04"])  # what it knows of both, in one query
    assert taken == []
    (tmp_path / paths[("AAPL", D1)]).unlink()  # behind the catalog's back
    sink.catalog.sync(SERIES, ["2024-03"])
    assert taken == ["2024-03"]
    assert stored(sink.catalog, ["AAPL"], [D1, D2]) == set()


def test_blocks_keep_bar_counts_of_any_size_and_read_back_mixed_widths() -> None:
    """Bar counts go into a block as 16-bit integers when they all fit, else 32-bit (a day of
    a liquid symbol's trades does not fit); blocks of both widths read back together."""
    import sqlite3

    from marketpipe.storage import catalog_blocks as blocks

    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE blocks ({blocks.COLUMNS})")
    small = [(738000, 1, 390, 1, 0), (738000, 2, 12, 0, 3)]
    large = [(738001, 1, 1_400_000, 1, 0), (738001, 3, 5, 1, 0)]
    rows = blocks.rows(1, 7, 0, small) + blocks.rows(1, 8, 0, large)
    assert [len(r[5]) for r in rows] == [4, 8]  # two 16-bit counts; two 32-bit ones
    db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    held = blocks.read(db, "blocks", 1)
    assert held.symbol.tolist() == [1, 2, 1, 3]
    assert held.bars.tolist() == [390, 12, 1_400_000, 5]
    assert held.complete.tolist() == [1, 0, 1, 1] and held.rejected.tolist() == [0, 3, 0, 0]
    assert held.day.tolist() == [738000, 738000, 738001, 738001]


def test_a_lookup_of_many_keys_reads_the_blocks_and_finds_what_the_probes_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpipe.storage import catalog_queries

    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL", "MSFT"], [D1, D2], partial={"MSFT": (D2,)})
    commit(sink, ["IBM"], [D2, D3], job="job2")
    keys = [(s, d) for s in ("AAPL", "MSFT", "IBM", "NONE") for d in (D1, D2, D3)]
    probed = sorted(sink.catalog.lookup(SERIES, keys), key=lambda p: (p.symbol, p.day))
    monkeypatch.setattr(catalog_queries, "_PROBES", 0)  # every lookup reads blocks now
    from_blocks = sorted(sink.catalog.lookup(SERIES, keys), key=lambda p: (p.symbol, p.day))
    assert from_blocks == probed
    assert [(p.symbol, p.day, p.complete) for p in probed] == [
        ("AAPL", D1, True), ("AAPL", D2, True), ("IBM", D2, True), ("IBM", D3, True),
        ("MSFT", D1, True), ("MSFT", D2, False),
    ]  # fmt: skip
    assert {p.bars for p in probed} == {390}


def test_a_file_read_by_its_checked_folder_is_still_only_a_name_in_it(tmp_path: Path) -> None:
    from marketpipe.storage.stores import LocalStore

    store = LocalStore(tmp_path)
    folder = "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/month=2024-03"
    assert store.file_to_read(f"{folder}/part-a.parquet") == tmp_path / folder / "part-a.parquet"
    for bad in (f"{folder}/..", f"{folder}/", "../../etc/..", f"{folder}/."):
        with pytest.raises(ValueError, match="not a file name"):
            store.file_to_read(bad)
    with pytest.raises(ValueError, match="outside the data root"):
        store.file_to_read("../elsewhere/part-a.parquet")  # the folder itself is checked


def test_every_path_of_a_local_store_stays_under_its_root(tmp_path: Path) -> None:
    """A path's folder is checked once a process and its name checked to be a name: what
    resolves outside the root is refused, a symlinked folder included."""
    from marketpipe.storage.stores import LocalStore

    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    store = LocalStore(tmp_path / "root")
    assert store.path("bars/month=2024-03/part.parquet") == (
        tmp_path / "root" / "bars" / "month=2024-03" / "part.parquet"
    )
    assert store.path("a/../b") == tmp_path / "root" / "a" / ".." / "b"  # resolves inside
    for bad in ("../outside/part.parquet", "bars/../../outside/x", "link/part.parquet"):
        with pytest.raises(ValueError, match="outside the data root"):
            store.path(bad)
    for bad in ("bars/month=2024-03/..", ".."):
        with pytest.raises(ValueError, match="not a file or folder name"):
            store.path(bad)
