"""A day file parsed in pieces cut at line ends holds the rows one parse of the whole gives."""

from __future__ import annotations

import io
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from marketpipe.model.errors import DataUnavailableError
from marketpipe_massive import day_csv
from marketpipe_massive.aggs import ROUNDING, AggReader
from marketpipe_massive.day_csv import DayCsv

TYPES = {"ticker": pa.string(), "volume": pa.float64(), "window_start": pa.int64()}
NEEDED = ("ticker", "volume", "window_start")


def text(rows: int, newline: str = "\n", extra: bool = False) -> str:
    head = "ticker,volume,window_start" + (",otc" if extra else "")
    lines = [f"T{i % 7:02d},{i * 1.5},{1_700_000_000_000_000_000 + i}" for i in range(rows)]
    if extra:
        lines = [line + ",false" for line in lines]
    return newline.join([head, *lines])


def parsed(data: str) -> pa.Table:
    reader = DayCsv(io.BytesIO(data.encode()), "test day", TYPES, NEEDED)
    batches = list(reader)
    return pa.Table.from_batches(batches) if batches else pa.table({})


@pytest.mark.parametrize("piece", [5, 64, 1000, 1 << 20])
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("last_newline", [True, False])
def test_pieces_hold_the_rows_of_one_parse(
    monkeypatch: pytest.MonkeyPatch, piece: int, ending: str, last_newline: bool
) -> None:
    monkeypatch.setattr(day_csv, "PIECE", piece)
    data = text(300, ending) + (ending if last_newline else "")
    whole = pacsv.read_csv(
        io.BytesIO(data.encode()), convert_options=pacsv.ConvertOptions(column_types=TYPES)
    )
    got = parsed(data)
    assert got.num_rows == 300
    assert got.select(whole.column_names).equals(whole)


def test_a_column_not_known_is_left_out_and_named() -> None:
    reader = DayCsv(io.BytesIO(text(3, extra=True).encode()), "test day", TYPES, NEEDED)
    assert reader.notes == ["test day: column(s) otc not known to MarketPipe, left out"]
    assert pa.Table.from_batches(list(reader)).column_names == list(TYPES)


def test_a_bad_value_in_a_later_piece_refuses_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(day_csv, "PIECE", 64)
    data = text(200) + "\nT01,lots,1700000000000000000\n"
    with pytest.raises(DataUnavailableError, match=r"test day: .*the day is refused") as caught:
        parsed(data)
    assert "\n" not in str(caught.value)


def test_a_line_longer_than_the_longest_refuses_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(day_csv, "PIECE", 16)
    monkeypatch.setattr(day_csv, "LONGEST_LINE", 100)
    with pytest.raises(DataUnavailableError, match="a line is longer than"):
        parsed(text(5) + "\nT01," + "9" * 200 + ",1\n")


def test_a_missing_column_and_an_empty_file_refuse_the_day() -> None:
    with pytest.raises(DataUnavailableError, match="the header lacks window_start"):
        parsed("ticker,volume\nA,1\n")
    with pytest.raises(DataUnavailableError, match="the day is refused"):
        parsed("")


def test_a_reader_stopped_early_stops_its_inflating_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(day_csv, "PIECE", 64)
    batches = iter(DayCsv(io.BytesIO(text(5000).encode()), "stopped day", TYPES, NEEDED))
    next(batches)
    assert any(t.name == "inflate stopped day" for t in threading.enumerate())
    batches.close()  # type: ignore[attr-defined]
    assert not any(t.name == "inflate stopped day" for t in threading.enumerate())


class Counting(io.RawIOBase):
    """A file that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        n = self._data.readinto(buffer)
        self.read_bytes += n
        return n


@pytest.mark.parametrize("ahead", [False, True])
def test_a_reader_not_reading_ahead_takes_from_the_file_only_what_it_parsed(
    ahead: bool,
) -> None:
    data = text(200_000).encode()  # about 8 MB
    raw = Counting(data)
    batches = iter(DayCsv(raw, "test day", TYPES, NEEDED, ahead=ahead))
    first = next(batches)
    assert first.num_rows > 0
    if ahead:  # pieces read ahead on their own thread: soon all of the file
        assert raw.read_bytes > 4 * day_csv.BLOCK
    else:  # one block parsed, one buffered at most
        assert raw.read_bytes <= 2 * day_csv.BLOCK + 4096
    batches.close()  # type: ignore[attr-defined]


def test_a_piece_not_of_the_strict_types_is_parsed_loose_and_so_is_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(day_csv, "PIECE", 64)
    whole = [f"T{i:02d},{i * 10},{1_700_000_000_000_000_000 + i}" for i in range(30)]
    decimal = [f"T{i:02d},{i * 10}.5,{1_700_000_000_000_000_000 + i}" for i in range(30, 40)]
    data = "\n".join(["ticker,volume,window_start", *whole, *decimal, *whole[:5]])
    strict = {**TYPES, "volume": pa.int64()}
    reader = DayCsv(io.BytesIO(data.encode()), "test day", strict, NEEDED, True, TYPES)
    batches = list(reader)
    types = [b.schema.field("volume").type for b in batches]
    assert types[0] == pa.int64() and types[-1] == pa.float64()  # loose from the piece on
    assert types == sorted(types, key=lambda t: t == pa.float64())
    volumes = [float(v) for b in batches for v in b.column("volume").to_pylist()]
    assert volumes == [i * 10 for i in range(30)] + [i * 10 + 0.5 for i in range(30, 40)] + [
        i * 10 for i in range(5)
    ]
    with pytest.raises(DataUnavailableError, match="the day is refused"):  # loose fails too
        list(DayCsv(io.BytesIO((data + "\nT01,lots,1\n").encode()), "test day", strict,
                    NEEDED, True, TYPES))  # fmt: skip


AGG_HEADER = "ticker,volume,open,close,high,low,window_start,transactions"


def _aggs(lines: list[str]) -> pa.Table:
    data = "\n".join([AGG_HEADER, *lines]).encode()
    return pa.Table.from_batches(list(AggReader(io.BytesIO(data), "test day")))


def test_whole_and_fractional_counts_read_alike_and_only_fractions_are_rounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(day_csv, "PIECE", 100)
    stamp = 1_700_000_000_000_000_000
    whole = [f"A{i:02d},{100 + i},1,1,1,1,{stamp},{i}" for i in range(20)]
    fractional = [f"B{i:02d},{100 + i}.6,1,1,1,1,{stamp},{i}.0" for i in range(5)]
    got = _aggs([*whole, *fractional, *whole[:3]])
    assert got.schema.field("volume").type == pa.int64()
    assert got["volume"].to_pylist() == [100 + i for i in range(20)] + [
        101 + i for i in range(5)
    ] + [100, 101, 102]
    assert got["trade_count"].to_pylist() == [*range(20), *range(5), 0, 1, 2]
    changed = pc.fill_null(pc.greater(got[ROUNDING], 0.0), False)
    assert pc.sum(changed).as_py() == 5  # the fractional rows, and none of the whole ones
    with pytest.raises(DataUnavailableError, match="not a finite count"):
        _aggs([f"A01,,1,1,1,1,{stamp},1"])  # an empty volume is not a count


def test_only_an_empty_field_is_a_missing_number() -> None:
    types = {"ticker": pa.string(), "volume": pa.int64(), "window_start": pa.int64()}

    def read(data: bytes) -> list[dict[str, object]]:
        reader = DayCsv(io.BytesIO(data), "test day", types, NEEDED)
        return pa.Table.from_batches(list(reader)).to_pylist()

    assert read(b"ticker,volume,window_start\nNA,,1\nNULL,5,2\n") == [
        {"ticker": "NA", "volume": None, "window_start": 1},
        {"ticker": "NULL", "volume": 5, "window_start": 2},
    ]
    with pytest.raises(DataUnavailableError, match="the day is refused"):
        read(b"ticker,volume,window_start\nA,NULL,1\n")
