"""A bar file's footer: partitions grouped by the days they hold, and the older per-partition
keys still read (and dropped when such a file is rewritten)."""

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from core_helpers import commit, simple_bars
from hypothesis import given, settings
from hypothesis import strategies as st
from marketpipe.ingestion import Session
from marketpipe.model.calendar import nyse_calendar
from marketpipe.storage.footer import (
    BARS_KEY,
    COVERAGE_KEY,
    PARTITIONS_KEY,
    Entry,
    Footer,
    parse_footer,
    read_footer,
)
from marketpipe.storage.parquet_files import write_bars
from marketpipe.storage.parquet_sink import ParquetSink

DAYS = [f"2024-03-{d:02d}" for d in range(1, 29)]


def no_count() -> dict:
    raise AssertionError("a footer with bar counts is not counted from its rows")


entries = st.dictionaries(
    st.tuples(st.sampled_from(["A", "B", "BRK.B", "C", "ZZZZ"]), st.sampled_from(DAYS)),
    st.builds(
        Entry,
        bars=st.integers(0, 1000) | st.just(390),
        complete=st.booleans(),
        rejected=st.integers(0, 3),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(entries)
def test_a_footer_reads_back_as_written(held: dict) -> None:
    footer = Footer(held, Session.EXTENDED, "job1", "2024-03-30T00:00:00+00:00", {})
    meta = {**footer.metadata(), b"marketpipe.job_id": b"job1"}
    assert COVERAGE_KEY not in meta and BARS_KEY not in meta
    assert parse_footer(meta, no_count).entries == held


def test_a_whole_market_month_of_day_bars_says_what_it_holds_in_kilobytes() -> None:
    symbols = [f"S{i:05d}" for i in range(10_000)]
    held = {(s, d): Entry(1, True) for s in symbols for d in DAYS[:21]}
    held[("S00007", DAYS[0])] = Entry(0, True)  # one empty day: its own group of bars
    del held[("S00042", DAYS[3])]  # listed a day late: a group of its own
    meta = Footer(held).metadata()
    value = meta[PARTITIONS_KEY]
    # Per partition (the older keys) this was 3.6 MB; the symbols' names are most of it now.
    assert len(value) < 200_000
    groups = json.loads(value)["groups"]
    assert len(groups) == 2 and sorted(len(g["symbols"]) for g in groups) == [1, 9_999]
    assert parse_footer(meta, no_count).entries == held


def test_a_file_of_an_earlier_release_is_read_and_rewritten_in_the_grouped_keys(
    tmp_path: Path,
) -> None:
    day = dt.date(2024, 3, 4)
    window = nyse_calendar().window(day, Session.REGULAR)
    both = pa.Table.from_batches([simple_bars("AAPL", window), simple_bars("MSFT", window)])
    older = {
        b"marketpipe.schema_version": b"1",
        b"marketpipe.provider": b"fake",
        b"marketpipe.feed": b"sim",
        b"marketpipe.adjustment": b"raw",
        b"marketpipe.timeframe": b"1m",
        b"marketpipe.job_id": b"old",
        b"marketpipe.fetched_at": b"2024-03-30T00:00:00+00:00",
        COVERAGE_KEY: json.dumps({"AAPL": ["2024-03-04"], "MSFT": ["2024-03-04"]}).encode(),
        BARS_KEY: json.dumps({"AAPL": [390], "MSFT": [390]}).encode(),
        b"marketpipe.partial": b"{}",
        b"marketpipe.session": b"regular",
    }
    folder = tmp_path / "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m/month=2024-03"
    folder.mkdir(parents=True)
    old = folder / "part-old-000000000000.parquet"
    with open(old, "wb") as fh:
        write_bars(both.replace_schema_metadata(older))(fh)
    assert read_footer(old).entries == {
        ("AAPL", "2024-03-04"): Entry(390, True),
        ("MSFT", "2024-03-04"): Entry(390, True),
    }

    # AAPL's day again: the old file is rewritten with MSFT's day alone.
    sink = ParquetSink(tmp_path)
    commit(sink, ["AAPL"], [day], job="new")
    sink.close()
    files = sorted(folder.glob("*.parquet"))
    assert len(files) == 2
    for path in files:
        kv = pq.read_metadata(path).metadata
        assert PARTITIONS_KEY in kv, path.name
        assert COVERAGE_KEY not in kv and BARS_KEY not in kv, path.name
    held = sorted(k for path in files for k in read_footer(path).entries)
    assert held == [("AAPL", "2024-03-04"), ("MSFT", "2024-03-04")]
