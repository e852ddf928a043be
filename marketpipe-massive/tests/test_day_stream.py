"""One pass over a day's file serves units that ask in any order; rows let go are read again."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest
from marketpipe.model.errors import DataUnavailableError
from marketpipe_massive import day_stream
from marketpipe_massive.day_stream import DayStream

TICKERS = [f"T{i:03d}" for i in range(40)]


def batches(tickers: list[str], rows_each: int = 3, per_batch: int = 7) -> list[pa.RecordBatch]:
    names = [t for t in tickers for _ in range(rows_each)]
    table = pa.table({"symbol": names, "n": list(range(len(names)))})
    return table.to_batches(max_chunksize=per_batch)


def stream(tickers: list[str] = TICKERS) -> tuple[DayStream, list[int]]:
    opened: list[int] = []

    def open_batches() -> Iterator[pa.RecordBatch]:
        opened.append(1)
        yield from batches(tickers)

    return DayStream(open_batches, "test day"), opened


def symbols(table: pa.Table) -> list[str]:
    return sorted(set(table.column(0).to_pylist()))


def test_units_in_any_order_share_one_pass() -> None:
    day, opened = stream()
    units = [TICKERS[i : i + 5] for i in range(0, 40, 5)]
    order = [1, 0, 3, 2, 5, 4, 7, 6]  # two in flight, finishing out of order
    for i in order:
        got = day.take(units[i])
        assert symbols(got) == units[i] and got.num_rows == 15
    assert len(opened) == 1


def test_a_unit_of_scattered_tickers_leaves_those_between_for_the_others() -> None:
    day, opened = stream()
    got = day.take(["T001", "T004", "T009"])  # --symbols: not a run of the file's tickers
    assert symbols(got) == ["T001", "T004", "T009"] and got.num_rows == 9
    assert got.column(1).to_pylist() == [3, 4, 5, 12, 13, 14, 27, 28, 29]  # file order
    between = day.take(["T000", "T002", "T003", "T005", "T008"])
    assert between.num_rows == 15 and between.column(1).to_pylist()[:3] == [0, 1, 2]
    assert day.take(["T010", "T011"]).num_rows == 6
    assert len(opened) == 1


def test_a_ticker_between_found_where_its_block_starts() -> None:
    # Every block starts with a new ticker: T002, between the two asked, is a block's first.
    day = DayStream(lambda: iter(batches(TICKERS, rows_each=3, per_batch=3)), "test day")
    got = day.take(["T001", "T003"])
    assert symbols(got) == ["T001", "T003"] and got.num_rows == 6
    assert day.take(["T002"]).num_rows == 3


def test_a_unit_asked_again_reads_the_file_again() -> None:
    day, opened = stream()
    assert day.take(TICKERS[:5]).num_rows == 15
    assert day.take(TICKERS[:5]).num_rows == 15  # a retry: its rows were handed out
    assert len(opened) == 2


def test_rows_nobody_asked_for_are_let_go_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(day_stream, "HELD_ROWS", 10)
    day, opened = stream()
    assert day.take(["T030"]).num_rows == 3  # 90 rows of T000..T029 read past
    assert day._held_rows <= 10 + 7
    assert day.take(["T031", "T032"]).num_rows == 6
    assert len(opened) == 1
    assert day.take(["T001"]).num_rows == 3  # let go: read again, not lost
    assert len(opened) == 2


def test_a_file_found_out_of_order_is_read_whole_and_a_late_row_fails_loudly() -> None:
    shuffled = TICKERS[20:] + TICKERS[:20]
    day, opened = stream(shuffled)
    assert symbols(day.take(["T025"])) == ["T025"]
    assert day.take(["T022"]).num_rows == 3
    # T005 comes after T039 in this file, which the stream cannot know yet: empty, as in a
    # sorted file it would truly be...
    assert day.take(["T005"]).num_rows == 0
    # ...until the rows read for a later unit show the disorder: T005's day is named, not lost
    with pytest.raises(DataUnavailableError, match=r"not sorted by ticker: rows of T005 came"):
        day.take(["T039"])
    assert any("not sorted by ticker" in n for n in day.notes)
    assert day.take(["T010"]).num_rows == 3  # read whole from then on
    assert day.take(["T039"]).num_rows == 3
    assert len(opened) == 1


def test_a_pass_reads_on_its_own_thread_until_the_stream_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(day_stream, "AHEAD", 1)
    readers: list[str] = []

    def open_batches() -> Iterator[pa.RecordBatch]:
        for batch in batches(TICKERS):
            readers.append(threading.current_thread().name)
            yield batch

    day = DayStream(open_batches, "closed day")
    assert day.take(TICKERS[:2]).num_rows == 6
    assert set(readers) == {"read closed day"}
    assert any(t.name == "read closed day" for t in threading.enumerate())
    day.close()
    assert not any(t.name == "read closed day" for t in threading.enumerate())
    assert len(readers) < len(batches(TICKERS))  # stopped, not read to the end
    # A unit asking after the close (a day retired while its last unit was in flight) gets a
    # new pass, never the rest of one cut short.
    assert day.take(TICKERS[30:]).num_rows == 30
    assert day.passes == 2
    day.close()
