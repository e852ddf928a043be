import asyncio
import datetime as dt
import os
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from core_helpers import simple_bars
from marketpipe.ingestion import OHLCVBar, Session, Timeframe, TimeRange
from marketpipe.model import files as atomic
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe.plugins.sink import CommitRequest
from marketpipe.storage import parquet_sink
from marketpipe.storage.bar_storage import ParquetDataStorage
from marketpipe.storage.footer import Entry, read_footer
from marketpipe.storage.layout import encode_component, quarantine_file
from marketpipe.storage.parquet_sink import ParquetSink

CAL = nyse_calendar()
D1, D2, D3 = dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)


def bars(symbols: list[str], days: list[dt.date], bump: float = 0.0) -> pa.Table:
    batches = [simple_bars(s, CAL.window(d, Session.REGULAR)) for s in symbols for d in days]
    table = pa.Table.from_batches(batches)
    return table.set_column(2, "open", pa.compute.add(table["open"], bump))


def commit(
    sink: ParquetSink, symbols: list[str], days: list[dt.date], job: str = "job1", bump: float = 0.0
) -> dict:
    return sink.commit(
        CommitRequest(
            table=bars(symbols, days, bump),
            coverage={s: tuple(days) for s in symbols},
            provider="fake",
            feed="sim",
            timeframe=Timeframe.M1,
            job_id=job,
        )
    )


def query(root: Path, sql: str) -> list[tuple]:
    return duckdb.sql(
        sql.replace("BARS", f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)")
    ).fetchall()


def test_commit_writes_hive_partitioned_zstd_files_with_metadata(tmp_path: Path) -> None:
    paths = commit(ParquetSink(tmp_path), ["AAPL", "MSFT"], [D1, D2])
    assert set(paths) == {(s, d) for s in ("AAPL", "MSFT") for d in (D1, D2)}
    rel = paths[("AAPL", D1)]
    assert rel.startswith(
        "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/month=2024-03/part-job1-"
    )
    meta = pq.read_metadata(tmp_path / rel)
    assert meta.row_group(0).column(0).compression == "ZSTD"
    kv = meta.metadata
    assert kv[b"marketpipe.provider"] == b"fake" and kv[b"marketpipe.job_id"] == b"job1"
    assert kv[b"marketpipe.schema_version"] == b"1" and b"marketpipe.fetched_at" in kv
    assert kv[b"marketpipe.adjustment"] == b"raw"
    assert read_footer(tmp_path / rel).entries == {
        (s, d): Entry(390, True) for s in ("AAPL", "MSFT") for d in ("2024-03-04", "2024-03-05")
    }
    rows = query(
        tmp_path,
        "SELECT provider, feed, adjustment, timeframe, month, count(*) FROM BARS GROUP BY ALL",
    )
    assert rows == [("fake", "sim", "raw", "1m", "2024-03", 4 * 390)]
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 1560
    assert (
        pq.read_table(tmp_path / rel).schema.remove_metadata().equals(BAR_SCHEMA.remove_metadata())
    )


def test_reingesting_one_day_replaces_exactly_that_days_rows(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL", "MSFT"], [D1, D2, D3], job="first")
    commit(sink, ["AAPL"], [D2], job="second", bump=1000.0)
    rows = query(
        tmp_path,
        "SELECT symbol, strftime(timestamp AT TIME ZONE 'America/New_York', "
        "'%Y-%m-%d') d, count(*), count(DISTINCT timestamp), max(open) > 1000 "
        "FROM BARS GROUP BY ALL ORDER BY ALL",
    )
    assert [r[:4] for r in rows] == [
        (s, d.isoformat(), 390, 390) for s in ("AAPL", "MSFT") for d in (D1, D2, D3)
    ]
    assert [r[4] for r in rows] == [False, True, False, False, False, False]
    files = sorted(p.name for p in tmp_path.rglob("*.parquet"))
    assert len(files) == 2
    # Replacing everything the first file held deletes it: no stale leftovers.
    commit(sink, ["AAPL", "MSFT"], [D1, D2, D3], job="third")
    assert [p.name.split("-")[1] for p in tmp_path.rglob("*.parquet")] == ["third"]
    assert query(tmp_path, "SELECT count(*) FROM BARS") == [(6 * 390,)]


def test_a_covered_day_with_no_rows_removes_stale_rows(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL"], [D1, D2])
    sink.commit(
        CommitRequest(
            table=BAR_SCHEMA.empty_table(),
            coverage={"AAPL": (D1,)},
            provider="fake",
            feed="sim",
            timeframe=Timeframe.M1,
            job_id="empty",
        )
    )
    assert query(tmp_path, "SELECT count(*) FROM BARS") == [(390,)]


def test_units_spanning_two_months_land_in_both_month_folders(tmp_path: Path) -> None:
    days = [dt.date(2024, 2, 29), dt.date(2024, 3, 1)]
    paths = commit(ParquetSink(tmp_path), ["AAPL"], days)
    assert {p.split("/")[5] for p in paths.values()} == {"month=2024-02", "month=2024-03"}
    assert query(tmp_path, "SELECT count(*) FROM BARS") == [(780,)]


@pytest.mark.parametrize("encoded", [False, True])
def test_a_units_rows_are_stored_in_symbol_and_time_order(tmp_path: Path, encoded: bool) -> None:
    # Rows reach the sink in any order; with symbols as the committer encodes them, their
    # dictionary is in the order of first appearance, here not the symbols' order.
    days, symbols = [D2, D1], ["MSFT", "AAPL"]
    table = pa.concat_tables(
        [bars([s], [d]).take(pa.array(range(389, -1, -1))) for s in symbols for d in days]
    )
    if encoded:
        table = table.set_column(0, "symbol", pa.compute.dictionary_encode(table["symbol"]))
    sink = ParquetSink(tmp_path)
    coverage = {s: tuple(days) for s in symbols}
    request = CommitRequest(
        table=table, coverage=coverage, provider="fake", feed="sim", timeframe=Timeframe.M1,
        job_id="job1",
    )  # fmt: skip
    paths = sink.commit(request)
    stored = pq.read_table(tmp_path / paths[("AAPL", D1)])
    keys = list(zip(stored["symbol"].to_pylist(), stored["timestamp"].to_pylist(), strict=True))
    assert len(keys) == 4 * 390 and keys == sorted(keys)


def test_rows_outside_the_coverage_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the unit's coverage"):
        ParquetSink(tmp_path).commit(
            CommitRequest(
                table=bars(["AAPL"], [D1, D2]),
                coverage={"AAPL": (D1,)},
                provider="fake",
                feed="sim",
                timeframe=Timeframe.M1,
                job_id="j",
            )
        )


def test_a_crash_mid_write_leaves_no_file_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL"], [D1], job="old")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        commit(sink, ["AAPL"], [D1], job="new")
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert [p.name.split("-")[1] for p in tmp_path.rglob("*.parquet")] == ["old"]
    assert query(tmp_path, "SELECT count(*) FROM BARS") == [(390,)]


def test_a_unit_is_encoded_before_its_folder_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units of one month (every unit of a whole market's day) encode side by side: the lock
    is held while the file is put in place and the folder brought in line, not while the rows
    are encoded."""
    sink = ParquetSink(tmp_path)
    done = threading.Event()
    encode = parquet_sink.encoded

    def encoded(write):  # type: ignore[no-untyped-def]
        body = encode(write)
        done.set()
        return body

    monkeypatch.setattr(parquet_sink, "encoded", encoded)
    folder = "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/month=2024-03"
    failed: list[BaseException] = []

    def run() -> None:
        try:
            commit(sink, ["AAPL", "MSFT"], [D1])
        except BaseException as exc:
            failed.append(exc)

    with sink.store.lock(folder):  # another unit's commit holds the folder
        worker = threading.Thread(target=run)
        worker.start()
        assert done.wait(10), "the unit waited for the folder's lock to encode its rows"
        assert not list(tmp_path.rglob("*.parquet"))  # encoded, not yet in the folder
    worker.join(10)
    assert not failed
    assert query(tmp_path, "SELECT count(*) FROM BARS") == [(780,)]


def test_paths_stay_inside_the_root_whatever_the_values(tmp_path: Path) -> None:
    for evil in ["../x", "A/B", "..", "CON", "a\x00b"]:
        path = quarantine_file(tmp_path, "abc", evil, "2024-01-02")
        assert tmp_path.resolve() in path.resolve().parents
        assert "/" not in encode_component(evil) and encode_component(evil) not in (".", "..")


def test_seed_storage_api_stores_a_partition_from_objects_or_arrow(tmp_path: Path) -> None:
    storage = ParquetDataStorage(output_path=tmp_path, provider="manual")
    table = bars(["MDGN+"], [D1])
    partition = asyncio.run(storage.store_bars(table, "MDGN+", D1))
    assert partition.bars_count == 390 and partition.symbol.value == "MDGN+"
    objects = OHLCVBar.from_table(table.slice(0, 10))
    again = asyncio.run(storage.store_bars(objects, "MDGN+", D1))
    assert again.bars_count == 10
    assert query(tmp_path, "SELECT symbol, count(*) FROM BARS GROUP BY ALL") == [("MDGN+", 10)]
    assert sorted(os.listdir(tmp_path)) == ["_marketpipe", "bars"]  # + the catalog
    assert os.listdir(tmp_path / "bars") == ["provider=manual"]


def test_a_staged_job_is_read_whole_or_not_at_all_also_after_a_crash_mid_publish(
    tmp_path: Path,
) -> None:
    """A refresh stages its months; readers (and a *.parquet glob) see the old rows until the
    job publishes, also while a publish cut short has renamed one month of two; publishing
    again finishes it: every month new, the old files gone, nothing staged left."""
    from marketpipe.model.values import Series
    from marketpipe.storage.layout import STAGING

    feb, mar = [dt.date(2024, 2, 28)], [D1, D2]
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL", "MSFT"], feb + mar, job="old")
    series = Series("fake", "sim", "raw", Timeframe.M1)

    def opens() -> set[float]:
        table = sink.read_range(series, ["AAPL", "MSFT"], feb[0], D2)
        return set(table["open"].to_pylist()) - set(
            bars(["AAPL", "MSFT"], feb + mar)["open"].to_pylist()
        )

    def staged(symbol: str, days: list[dt.date]) -> None:
        sink.stage(CommitRequest(table=bars([symbol], days, bump=1000.0),
                                 coverage={symbol: tuple(days)}, provider="fake", feed="sim",
                                 timeframe=Timeframe.M1, job_id="new"))  # fmt: skip

    staged("AAPL", feb)
    staged("AAPL", mar)
    assert opens() == set()  # nothing new is read
    assert query(tmp_path, "SELECT count(*) FROM BARS") == [(2 * 3 * 390,)]  # nor globbed
    # A publish cut short: the marker written, February renamed, March not yet.
    (tmp_path / STAGING).mkdir(parents=True)
    (tmp_path / STAGING / "new.staged").write_text("new")
    [february] = (tmp_path).rglob("month=2024-02/*.staged")
    february.rename(february.with_name(february.name.removesuffix(".staged")))
    reader = ParquetSink(tmp_path)  # another process: it learns from the files alone
    assert reader.read_range(series, ["AAPL"], feb[0], D2).num_rows == 3 * 390
    assert opens() == set()
    assert sink.publish(series, "new") == 1
    table = reader.read_range(series, ["AAPL", "MSFT"], feb[0], D2)
    new = table.filter(pa.compute.greater_equal(table["open"], 1000.0))
    assert set(new["symbol"].to_pylist()) == {"AAPL"} and new.num_rows == 3 * 390
    assert table.num_rows == 6 * 390  # MSFT's old rows stay, AAPL's old rows are gone
    assert query(tmp_path, "SELECT count(*), count(DISTINCT (symbol, timestamp)) FROM BARS") == [
        (6 * 390, 6 * 390)
    ]
    assert not list(tmp_path.rglob("*.staged"))
    assert sink.publish(series, "new") == 0  # idempotent
    reader.close()
    sink.close()


def test_a_symbol_read_decodes_only_the_row_groups_that_can_hold_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpipe.model.calendar import day_bounds
    from marketpipe.storage import parquet_files
    from marketpipe.storage.parquet_files import read_symbols, write_bars

    windows = nyse_calendar().windows(
        TimeRange(dt.date(2024, 3, 4), dt.date(2024, 3, 6)), Session.REGULAR
    )
    table = pa.Table.from_batches(
        [simple_bars(s, w, 30) for s in ("AAA", "BBB", "CCC", "DDD") for w in windows]
    ).cast(BAR_SCHEMA)  # sorted by symbol
    per_symbol = table.num_rows // 4
    path = tmp_path / "bars.parquet"
    with open(path, "wb") as fh:
        write_bars(table, rows_per_group=per_symbol)(fh)  # one symbol a row group
    asked: list[list[int]] = []
    real = pq.ParquetFile.read_row_groups

    def spy(self: pq.ParquetFile, groups: list[int], *args: object, **kw: object) -> pa.Table:
        asked.append(list(groups))
        return real(self, groups, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(parquet_files.pq.ParquetFile, "read_row_groups", spy)
    lo, hi = day_bounds(dt.date(2024, 3, 5), dt.date(2024, 3, 6))
    got = read_symbols(str(path), ["BBB", "DDD"], lo, hi)
    assert asked == [[1, 3]]
    expected = table.filter(
        pa.compute.and_(
            pa.compute.is_in(table["symbol"], pa.array(["BBB", "DDD"])),
            pa.compute.greater_equal(table["timestamp"], lo),
        )
    )
    assert got.to_pylist() == expected.to_pylist()
    assert got.num_rows == 2 * 2 * per_symbol // 3  # two symbols, two of the three days


def test_a_process_forked_after_a_read_reads_too(tmp_path: Path) -> None:
    """Reads keep their threads; a forked child (a Dask worker, a kit's writer) has none of
    them and must not wait on them forever."""
    import multiprocessing

    sink = ParquetSink(tmp_path)
    day = dt.date(2024, 3, 4)
    window = nyse_calendar().window(day, Session.REGULAR)
    sink.commit(
        CommitRequest(
            table=pa.Table.from_batches([simple_bars("AAPL", window)]),
            coverage={"AAPL": (day,)},
            provider="fake",
            feed="sim",
            timeframe=Timeframe.M1,
            job_id="job1",
        )
    )
    series = sink.catalog.series()[0]
    assert sink.read_range(series, ["AAPL"], day, day).num_rows == 390  # the pool is started

    def child() -> None:
        rows = ParquetSink(tmp_path).read_range(series, ["AAPL"], day, day).num_rows
        os._exit(0 if rows == 390 else 3)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
    assert proc.exitcode == 0
