"""The IEX provider: local sources, the HIST index, the download cache, the conformance kit."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from iex_days import SYMBOLS, write_day, write_days
from iex_encoder import gzipped, ns, pcapng, segments_of, trade
from marketpipe.fetch import ClientConfig, MalformedResponseError
from marketpipe.fetch import client as client_module
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.errors import DataUnavailableError, InvalidInputError
from marketpipe.model.request import FetchRequest
from marketpipe.model.values import Session, Symbol, Timeframe, TimeRange
from marketpipe.testing import check_provider
from marketpipe_iex import IexHistProvider
from marketpipe_iex.hist.index import HistIndexClient, parse_index, pick
from marketpipe_iex.testing import FakeHistServer, Faults, ServedFile
from pytest_httpx import HTTPXMock

DAYS = [dt.date(2024, 3, 4) + dt.timedelta(days=i) for i in range(5)]


@pytest.fixture(autouse=True)
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module.time, "sleep", lambda _: None)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_days(tmp_path_factory.mktemp("captures"), DAYS)


def request(
    days: list[dt.date], symbols: tuple[str, ...] = ("AAPL", "MSFT"), **kw: object
) -> FetchRequest:
    session = kw.pop("session", Session.REGULAR)
    return FetchRequest(
        symbols=tuple(Symbol(s) for s in symbols),
        windows=tuple(nyse_calendar().windows(TimeRange(min(days), max(days)), session)),  # type: ignore[arg-type]
        timeframe=kw.pop("timeframe", Timeframe.M1),  # type: ignore[arg-type]
        session=session,  # type: ignore[arg-type]
    )


def fetch(provider: IexHistProvider, req: FetchRequest) -> pa.Table:
    batches = list(provider.fetch(req))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def test_conformance_kit(week: list[Path], tmp_path: Path) -> None:
    report = check_provider(
        "iex", settings={"source": str(week[0].parent), "cache_dir": str(tmp_path)}
    )
    assert report.bars > 0


def test_sources_give_days_and_feed_from_content(week: list[Path], tmp_path: Path) -> None:
    provider = IexHistProvider(source=str(week[0].parent / "capture-*"), cache_dir=str(tmp_path))
    assert provider.available_days() == DAYS and provider.feed == "tops"
    windows = nyse_calendar().windows(TimeRange(DAYS[0], DAYS[-1]), Session.REGULAR)
    assert provider.list_symbols(windows) == sorted(SYMBOLS)
    with pytest.raises(DataUnavailableError, match="no TOPS capture of 2024-03-11"):
        fetch(provider, request([dt.date(2024, 3, 11)]))


def test_network_and_local_sources_give_identical_bars(week: list[Path], tmp_path: Path) -> None:
    local = IexHistProvider(source=str(week[0].parent), cache_dir=str(tmp_path / "a"))
    expected = fetch(local, request(DAYS, timeframe=Timeframe.M5, session=Session.EXTENDED))
    served = [ServedFile(path, day) for path, day in zip(week, DAYS, strict=True)]
    with FakeHistServer(served) as server:
        remote = IexHistProvider(base_url=server.base_url, cache_dir=str(tmp_path / "b"))
        got = fetch(remote, request(DAYS, timeframe=Timeframe.M5, session=Session.EXTENDED))
        assert got.equals(expected) and got.num_rows > 0
        downloads = [p for p, _ in server.requests if p.startswith("/download/")]
        assert len(downloads) == len(DAYS)
        # a complete file is never downloaded twice (a new process, its decoded days removed)
        for cached in (tmp_path / "b" / "bars").glob("*.parquet"):
            cached.unlink()
        again = IexHistProvider(base_url=server.base_url, cache_dir=str(tmp_path / "b"))
        assert fetch(again, request(DAYS[:2])).num_rows > 0
        assert [p for p, _ in server.requests if p.startswith("/download/")] == downloads


@pytest.mark.parametrize("ignore_range", [False, True], ids=["range", "server-ignores-range"])
def test_an_interrupted_download_resumes(
    week: list[Path], tmp_path: Path, ignore_range: bool
) -> None:
    faults = Faults(cut_after=8_000, cuts=2, ignore_range=ignore_range)
    with FakeHistServer([ServedFile(week[0], DAYS[0])], faults) as server:
        provider = IexHistProvider(base_url=server.base_url, cache_dir=str(tmp_path))
        assert fetch(provider, request(DAYS[:1])).num_rows > 0
        ranges = [r for p, r in server.requests if p.startswith("/download/")]
    assert ranges[0] is None and len(ranges) == 3
    if not ignore_range:
        assert ranges[1:] == ["bytes=8000-", "bytes=16000-"]
    cached = next((tmp_path / "hist").glob("*.pcap.gz"))
    assert cached.name == "20240304_IEXTP1_TOPS1.6.pcap.gz"
    assert cached.read_bytes() == week[0].read_bytes()
    assert not list((tmp_path / "hist").glob("*.part"))


def test_the_whole_index_and_the_day_query_agree(week: list[Path]) -> None:
    served = [ServedFile(path, day) for path, day in zip(week, DAYS, strict=True)]
    with FakeHistServer(served, Faults(size_as_int=True)) as server:
        client = HistIndexClient(ClientConfig(base_url=server.base_url))
        everything = client.all_files()
        assert [f.day for f in everything] == DAYS
        assert client.files(DAYS[2]) == [everything[2]]
        assert everything[0].size == week[0].stat().st_size
        client.close()


def test_a_size_that_disagrees_with_the_index_is_refused(week: list[Path], tmp_path: Path) -> None:
    with FakeHistServer([ServedFile(week[0], DAYS[0])], Faults(wrong_size=True)) as server:
        provider = IexHistProvider(base_url=server.base_url, cache_dir=str(tmp_path))
        with pytest.raises(MalformedResponseError, match="its index says"):
            fetch(provider, request(DAYS[:1]))
    kept = [p.name for p in (tmp_path / "hist").iterdir() if p.suffix != ".lock"]
    assert kept == []  # neither the capture nor its part


def test_a_day_without_a_file_is_reported_as_such(week: list[Path], tmp_path: Path) -> None:
    with FakeHistServer([ServedFile(week[0], DAYS[0], feed="DEEP", version="1.0")]) as server:
        provider = IexHistProvider(base_url=server.base_url, cache_dir=str(tmp_path))
        with pytest.raises(
            DataUnavailableError, match=r"no TOPS file for 2024-03-04 \(it lists DEEP 1.0\)"
        ):
            fetch(provider, request(DAYS[:1]))
        with pytest.raises(DataUnavailableError, match="no TOPS file for 2024-03-05"):
            fetch(provider, request(DAYS[1:2]))
        deep = IexHistProvider(feed="deep", base_url=server.base_url, cache_dir=str(tmp_path))
        assert deep.feed == "deep" and fetch(deep, request(DAYS[:1])).num_rows > 0


def test_a_truncated_capture_is_a_note_and_keeps_its_trades(tmp_path: Path) -> None:
    day = DAYS[0]
    capture = pcapng(
        segments_of(
            [trade(ns(day, "10:00") + i, "AAPL", 100, 10.0, i + 1) for i in range(50)],
            ns(day, "09:59"),
        )
    )
    (tmp_path / "cut.pcap").write_bytes(capture.data[:-30])
    provider = IexHistProvider(source=str(tmp_path / "cut.pcap"), cache_dir=str(tmp_path / "cache"))
    table = fetch(provider, request([day], ("AAPL",)))
    assert table["volume"].to_pylist() == [100 * 49]
    notes = provider.take_notes()
    assert len(notes) == 1 and "truncated" in notes[0] and provider.take_notes() == []


def test_bad_sources_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="matches no file"):
        IexHistProvider(source=str(tmp_path / "nothing-*.gz"))
    (tmp_path / "notes.txt").write_text("hello, not a capture")
    with pytest.raises(InvalidInputError, match="not a pcap or pcap-ng"):
        IexHistProvider(source=str(tmp_path / "notes.txt"))
    (tmp_path / "two").mkdir()
    write_day(tmp_path / "two", DAYS[0], name="a.gz")
    write_day(tmp_path / "two", DAYS[0], name="b.gz")
    with pytest.raises(InvalidInputError, match="two TOPS captures of 2024-03-04"):
        IexHistProvider(source=str(tmp_path / "two"))
    with pytest.raises(InvalidInputError, match="unknown feed"):
        IexHistProvider(feed="quotes")


# -- the index, at the HTTP boundary ------------------------------------------------------------

ENTRY = {
    "link": "https://www.googleapis.com/download/storage/v1/b/iex/o/data%2Ffeeds%2F20240102%2F20240102_IEXTP1_TOPS1.6.pcap.gz?generation=1&alt=media",
    "date": "20240102",
    "feed": "TOPS",
    "version": "1.6",
    "protocol": "IEXTP1",
    "size": "2712345678",
}


def test_index_answers_in_both_shapes_with_either_size_type() -> None:
    as_map = parse_index(
        json.dumps(
            {"20240102": [ENTRY, {**ENTRY, "feed": "DEEP", "version": "1.0", "size": 5}]}
        ).encode()
    )
    as_list = parse_index(json.dumps([ENTRY]).encode())
    assert as_map[0] == as_list[0] and as_map[0].size == 2_712_345_678 and as_map[1].size == 5
    day = dt.date(2024, 1, 2)
    assert pick(as_map, day, "DEEP", None) == as_map[1]
    assert pick(as_map, day, "TOPS", "1.5") is None
    old = parse_index(json.dumps([{**ENTRY, "version": "1.5"}, ENTRY]).encode())
    assert pick(old, day, "TOPS", None) == old[1]  # the newest version
    assert pick(old, day, "TOPS", "1.5").trade_layout == 42  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [
        b"<html>",
        b'"text"',
        json.dumps([{**ENTRY, "size": "big"}]).encode(),
        json.dumps([{"date": "20240102"}]).encode(),
    ],
)
def test_a_malformed_index_is_a_clear_error(body: bytes) -> None:
    with pytest.raises(MalformedResponseError, match="IEX HIST index"):
        parse_index(body)


def test_index_client_asks_for_the_day(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="https://iextrading.com/api/1.0/hist?date=20240102", json={"20240102": [ENTRY]}
    )
    client = HistIndexClient(ClientConfig(base_url="https://iextrading.com/api/1.0"))
    files = client.files(dt.date(2024, 1, 2))
    assert [f.label for f in files] == ["2024-01-02 TOPS 1.6"]
    client.close()


def test_index_server_errors_are_retried(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpipe.fetch import client as base_client

    monkeypatch.setattr(base_client.time, "sleep", lambda _: None)
    url = "https://iextrading.com/api/1.0/hist?date=20240102"
    httpx_mock.add_response(url=url, status_code=503)
    httpx_mock.add_response(url=url, json=[])
    client = HistIndexClient(ClientConfig(base_url="https://iextrading.com/api/1.0"))
    assert client.files(dt.date(2024, 1, 2)) == []
    client.close()


def test_decoding_is_cached_per_capture(
    week: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = IexHistProvider(source=str(week[0].parent), cache_dir=str(tmp_path))
    first = fetch(provider, request(DAYS[:1]))
    calls = []
    monkeypatch.setattr(IexHistProvider, "_decode", lambda *a: calls.append(a))
    fresh = IexHistProvider(source=str(week[0].parent), cache_dir=str(tmp_path))
    assert fetch(fresh, request(DAYS[:1])).equals(first) and calls == []


def test_gzip_or_plain_sources_alike(tmp_path: Path) -> None:
    day = DAYS[0]
    capture = pcapng(segments_of([trade(ns(day, "10:00"), "AAPL", 100, 10.0, 1)], ns(day, "09:59")))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "x.pcap").write_bytes(capture.data)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "x.pcap").write_bytes(gzipped(capture.data))
    got = [
        fetch(
            IexHistProvider(source=str(tmp_path / k), cache_dir=str(tmp_path / f"c{k}")),
            request([day], ("AAPL",)),
        )
        for k in "pg"
    ]
    assert got[0].equals(got[1]) and got[0].num_rows == 1


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The days whose capture a provider decodes, in order, from now on."""
    days: list[str] = []
    original = IexHistProvider._decode

    def counting(
        self: IexHistProvider, capture: object, day: dt.date, ticks: object = None
    ) -> object:
        days.append(str(day))
        return original(self, capture, day, ticks)  # type: ignore[arg-type]

    monkeypatch.setattr(IexHistProvider, "_decode", counting)
    return days


def test_a_job_reads_each_days_capture_once(
    week: list[Path], tmp_path: Path, decoded: list[str]
) -> None:
    import asyncio

    from marketpipe.run.pipeline import IngestRequest, run_ingest

    summary = asyncio.run(
        run_ingest(
            IngestRequest(
                provider="iex",
                symbols=tuple(Symbol(s) for s in SYMBOLS),
                time_range=TimeRange(DAYS[0], DAYS[1]),
                data_dir=tmp_path / "data",
                overrides={"source": str(week[0].parent), "cache_dir": str(tmp_path / "cache")},
                batch_size=200,  # one unit per symbol and day: six units
            )
        )
    )
    assert summary.partitions_completed == 6 and summary.bars > 0
    assert sorted(decoded) == ["2024-03-04", "2024-03-05"]


@pytest.mark.parametrize("kind", [Timeframe.TRADES, Timeframe.M1])
def test_a_whole_market_job_decodes_each_day_once_whatever_its_kind(
    week: list[Path], tmp_path: Path, decoded: list[str], kind: Timeframe
) -> None:
    import asyncio

    from marketpipe.run.pipeline import IngestRequest, run_ingest

    summary = asyncio.run(
        run_ingest(
            IngestRequest(
                provider="iex",
                symbols=(),
                all_symbols=True,
                time_range=TimeRange(DAYS[0], DAYS[1]),
                timeframe=kind,
                data_dir=tmp_path / "data",
                overrides={"source": str(week[0].parent), "cache_dir": str(tmp_path / "cache")},
            )
        )
    )
    assert summary.partitions_completed == len(SYMBOLS) * 2 and summary.bars > 0
    # Listed from the same pass that kept the ticks: no second decode of a day.
    assert sorted(decoded) == ["2024-03-04", "2024-03-05"]


# -- nothing from the network becomes a path ----------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        {"protocol": "../../../tmp/evil"},
        {"protocol": "IEXTP1/.."},
        {"protocol": ""},
        {"feed": "TOPS/../../x"},
        {"feed": ".."},
        {"version": "1.6/../../../x"},
        {"version": ".."},
        {"version": "1.6\x00"},
        {"version": "9" * 40},
    ],
)
def test_an_index_entry_with_unexpected_names_is_rejected(hostile: dict[str, str]) -> None:
    with pytest.raises(MalformedResponseError, match="IEX HIST index entry is malformed"):
        parse_index(json.dumps([{**ENTRY, **hostile}]).encode())


def test_an_entry_of_a_feed_marketpipe_does_not_read_is_left_out() -> None:
    files = parse_index(json.dumps([ENTRY, {**ENTRY, "feed": "QUOTES2"}]).encode())
    assert [f.feed for f in files] == ["TOPS"]


def test_the_cache_file_name_is_built_from_checked_parts_never_the_link() -> None:
    evil = {**ENTRY, "link": "https://x.test/dl/..%2F..%2F..%2Fhome%2Fuser%2F.bashrc"}
    hist = parse_index(json.dumps([evil]).encode())[0]
    assert hist.file_name == "20240102_IEXTP1_TOPS1.6.pcap.gz"


def test_a_download_stops_as_soon_as_it_passes_the_promised_size(tmp_path: Path) -> None:
    from marketpipe.fetch.client import HttpClient
    from marketpipe.fetch.download import download_file
    from marketpipe.testing.http import Answer, ScriptedServer

    body = b"x" * (8 << 20)
    with ScriptedServer([Answer(body=body, headers={"Content-Type": "application/gzip"})]) as s:
        client = HttpClient(ClientConfig(base_url=s.url))
        target = tmp_path / "day.pcap.gz"
        with pytest.raises(MalformedResponseError, match="more than the 1,000 bytes"):
            download_file(client, f"{s.url}/file", target, expected_size=1000)
        client.close()
    assert not target.exists() and not list(tmp_path.iterdir())


def test_an_empty_source_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no file"):
        IexHistProvider(source=str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "stale",
    [
        pa.table({"symbol": ["AAPL"], "minute": [1]}),  # columns missing
        pa.table({"x": [1.0]}),
        None,  # not parquet at all
    ],
)
def test_a_day_cache_file_of_another_schema_is_decoded_again(
    week: list[Path], tmp_path: Path, stale: pa.Table | None
) -> None:
    import pyarrow.parquet as pq
    from marketpipe_iex import day_cache

    expected = fetch(IexHistProvider(source=str(week[0])), request(DAYS[:1]))
    cached = day_cache.cache_file(tmp_path / "bars", week[0])
    cached.parent.mkdir(parents=True)
    if stale is None:
        cached.write_bytes(b"PAR1 garbage")
    else:
        pq.write_table(stale, cached)
    provider = IexHistProvider(source=str(week[0]), cache_dir=str(tmp_path))
    assert fetch(provider, request(DAYS[:1])).equals(expected)
    assert day_cache.load(cached) is not None  # replaced by a good one
