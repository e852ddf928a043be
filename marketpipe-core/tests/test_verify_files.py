"""mp verify's look into each file: bar counts against the footer, rows of partitions the
footer does not list, repeated rows, and a partition in two files of a month; a dataset that
holds what it says passes whole."""

import datetime as dt
from pathlib import Path

import pyarrow as pa
from core_helpers import commit, simple_bars
from marketpipe.ingestion import Session
from marketpipe.model.calendar import nyse_calendar
from marketpipe.storage.footer import Entry, Footer
from marketpipe.storage.parquet_files import write_bars
from marketpipe.storage.parquet_sink import ParquetSink

DAY, NEXT = dt.date(2024, 3, 4), dt.date(2024, 3, 5)
FOLDER = "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/month=2024-03"


def bars(symbol: str, day: dt.date) -> pa.Table:
    return pa.Table.from_batches(
        [simple_bars(symbol, nyse_calendar().window(day, Session.REGULAR))]
    )


def write(root: Path, name: str, table: pa.Table, entries: dict) -> None:
    meta = {b"marketpipe.job_id": b"hand", **Footer(entries).metadata()}
    path = root / FOLDER / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        write_bars(table.replace_schema_metadata(meta))(fh)


def problems_of(root: Path) -> list[tuple[str, str]]:
    sink = ParquetSink(root)
    try:
        report = sink.verify([], lambda _path: [])
    finally:
        sink.close()
    return sorted((p.kind, p.detail) for p in report.problems)


def test_a_dataset_that_holds_what_it_says_passes_with_its_totals(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL", "MSFT"], [DAY, NEXT])
    report = sink.verify([], lambda _path: [])
    sink.close()
    assert report.ok and (report.files, report.partitions, report.bars) == (1, 4, 4 * 390)


def test_each_way_a_file_can_disagree_with_its_footer_is_named(tmp_path: Path) -> None:
    short = bars("AAPL", DAY).slice(0, 389)
    write(
        tmp_path,
        "part-short-000000000001.parquet",
        short,
        {("AAPL", "2024-03-04"): Entry(390, True)},
    )
    extra = pa.concat_tables([bars("MSFT", DAY), bars("IBM", DAY)])
    write(
        tmp_path,
        "part-extra-000000000002.parquet",
        extra,
        {("MSFT", "2024-03-04"): Entry(390, True)},
    )
    twice = bars("TSLA", DAY)
    doubled = pa.concat_tables([twice, twice.slice(0, 2)])
    write(
        tmp_path,
        "part-twice-000000000003.parquet",
        doubled,
        {("TSLA", "2024-03-04"): Entry(392, True)},
    )
    assert problems_of(tmp_path) == [
        ("duplicate", "2 rows repeat a (symbol, timestamp) in the file"),
        ("footer", "bar counts disagree: AAPL 2024-03-04 (390 in the footer, 389 rows)"),
        ("footer", "rows of partitions the footer does not list: IBM 2024-03-04"),
    ]


def test_a_partition_with_rows_in_two_files_of_a_month_is_named_with_both(tmp_path: Path) -> None:
    for name in ("part-a-000000000001.parquet", "part-b-000000000002.parquet"):
        write(tmp_path, name, bars("AAPL", DAY), {("AAPL", "2024-03-04"): Entry(390, True)})
    write(
        tmp_path,
        "part-c-000000000003.parquet",
        bars("MSFT", DAY),
        {("MSFT", "2024-03-04"): Entry(390, True)},
    )
    assert problems_of(tmp_path) == [
        (
            "duplicate",
            "AAPL 2024-03-04 has rows in 2 files: part-a-000000000001.parquet, "
            "part-b-000000000002.parquet",
        )
    ]
