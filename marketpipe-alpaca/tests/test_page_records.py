"""Alpaca's tick pages read without a JSON parser (page_records) against pyarrow's JSON reader:
a page the fast reader takes gives exactly the reader's columns, and a page it cannot vouch for
(malformed, or only shaped otherwise) it leaves to the reader."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketpipe.fetch import ClientConfig, MalformedResponseError
from marketpipe.model.values import Timeframe
from marketpipe_alpaca import page_records
from marketpipe_alpaca.client import read_page
from marketpipe_alpaca.page_records import MIN_BYTES, read_records
from marketpipe_alpaca.ticks import _QUOTE, _TRADE, AlpacaTickClient

TRAILING, TEXT = ("u",), ("i",)


def pyarrow_rows(body: bytes, key: str, names: list[str], item: pa.StructType) -> tuple[Any, ...]:
    """What pyarrow's JSON reader makes of the page: the records of every symbol in the order
    asked, the symbols holding records, the token."""
    schema = pa.schema(
        [(key, pa.struct([(s, pa.list_(item)) for s in names])), ("next_page_token", pa.string())]
    )
    page = read_page(body, schema)
    if page.num_rows != 1:  # not one object: refused (parse_response's check)
        raise pa.ArrowInvalid("not one JSON object")
    by_symbol = page[key].combine_chunks()
    parts = {s: by_symbol.field(i).flatten() for i, s in enumerate(names)}
    return parts, page["next_page_token"][0].as_py()


def agrees(body: bytes, key: str, names: list[str], item: pa.StructType) -> bool:
    """The fast reader takes ``body`` only as pyarrow's reader reads it; ``True`` when it took
    it. Where pyarrow refuses the page, the fast reader must not take it."""
    fast = read_records(body, key, names, item, TRAILING, TEXT)
    try:
        parts, token = pyarrow_rows(body, key, names, item)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        assert fast is None, body
        return False
    if fast is None:
        return False
    held = {s: rows for s, rows in parts.items() if len(rows)}
    assert sorted(fast.symbols) == sorted(held)  # (in the page's order)
    assert fast.counts == [len(held[s]) for s in fast.symbols]
    assert fast.token == (token or None)
    expected = pa.concat_arrays([held[s] for s in fast.symbols])
    for i in range(item.num_fields):
        name = item.field(i).name
        want = expected.field(name)
        if name in TEXT:
            want = pc.cast(want, pa.string())
        got = fast.rows.field(name)
        assert got.equals(want), (name, got[:5], want[:5])
    return True


def rfc3339(ns: int, digits: int) -> str:
    seconds, fraction = divmod(ns, 10**9)
    whole = pa.scalar(seconds, pa.timestamp("s")).as_py().strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{f'{fraction:09d}'[:digits]}Z" if digits else f"{whole}Z"


def page(
    records: dict[str, list[dict[str, Any]]], key: str = "trades", token: Any = "abc"
) -> bytes:
    body = {key: records, "next_page_token": token}
    return json.dumps(body, separators=(",", ":")).encode()


def trade(n: int, **changed: Any) -> dict[str, Any]:
    record = {
        "t": rfc3339(1_709_562_600_000_000_000 + n * 1_000_003, 9),
        "x": "V",
        "p": round(100 + n * 0.37, 2),
        "s": 100 + n,
        "c": ["@", "T"] if n % 3 else [" "],
        "i": 52_983_525_029_461 + n,
        "z": "C",
    }
    if n % 7 == 3:
        record["u"] = "canceled"
    record.update(changed)
    return {k: v for k, v in record.items() if v is not None}


def trades_page(count: int = 40, **changed: Any) -> bytes:
    return page({"AAPL": [trade(n, **changed) for n in range(count)]})


def test_a_compact_page_is_read_without_the_json_reader_and_equals_it() -> None:
    body = page(
        {
            "AAPL": [trade(n) for n in range(30)],
            "MSFT": [trade(n, c=[]) for n in range(30, 50)],
        }
    )
    assert len(body) > MIN_BYTES
    assert agrees(body, "trades", ["MSFT", "AAPL", "TSLA"], _TRADE)
    fast = read_records(body, "trades", ["AAPL", "MSFT"], _TRADE, TRAILING, TEXT)
    assert fast is not None and fast.symbols == ["AAPL", "MSFT"] and fast.counts == [30, 20]
    assert fast.rows.field("u").null_count == 50 - sum(n % 7 == 3 for n in range(50))
    # The token first, an empty symbol between, a last page: the same.
    for body in (
        json.dumps(
            {"next_page_token": None, "trades": {"A": [trade(n) for n in range(40)], "B": []}},
            separators=(",", ":"),
        ).encode(),
        page({"A": [trade(n) for n in range(20)], "B": [], "C": [trade(n) for n in range(20)]}),
    ):
        assert agrees(body, "trades", ["A", "B", "C"], _TRADE)


def test_quotes_and_the_fake_servers_pages_are_read_fast() -> None:
    quotes = {
        "AAPL": [
            {"t": rfc3339(1_709_562_600_000_000_000 + n, n % 10), "bx": "V", "bp": 0 if n % 5 else 9.5,
             "bs": n % 4, "ax": "K", "ap": 10.25, "as": 3, "c": ["R"], "z": "C"}
            for n in range(40)
        ]
    }  # fmt: skip
    body = page(quotes, key="quotes")
    assert agrees(body, "quotes", ["AAPL"], _QUOTE)
    # Quotes have no trailing field: a record must end where its last field does.
    for broken in (b',,{"t"', b',{"t"', b'}{"t"', b',]},{"t"'):
        assert not agrees(third(body, b'},{"t"', broken), "quotes", ["AAPL"], _QUOTE)


@pytest.mark.parametrize(
    "broken",
    [
        b'"p":1e2', b'"p":1.e2', b'"p":01', b'"p":1.', b'"p":.5', b'"p":-', b'"p":+1',
        b'"p":NaN', b'"p":null', b'"p":"1"', b'"p": 1', b'"p":1 ', b'"p":[1]', b'"p":{}',
        b'"p":-0', b'"p":-0.5', b'"x":null', b'"x":1', b'"x":"\\u0041"', b'"x":"\xc3\xa9"',
        b'"c":[]', b'"c":[1]', b'"c":["@",]', b'"c":[,"@"]', b'"c":["@""T"]', b'"c":[["@"]]',
        b'"c":["]"]', b'"c":["},{"]', b'"c":["@"],"c":["T"]', b'"i":-5', b'"i":1.5',
        b'"i":123456789012345678901', b'"t":"2024-03-04"', b'"t":"2024-03-04T14:30:00+01:00"',
        b'"t":"2024-02-30T14:30:00Z"', b'"t":"2024-03-04T14:30:00.1234567891Z"', b'"t":5',
        b'"q":1', b'"u":"x"', b'"p":1,"p":2', b'"x";"V"', b'"p";1', b'"c":["@":"T"]',
        b'"c":["@";"T"]', b'"i":', b'"i":-0', b'"p":',
    ],
)  # fmt: skip
def test_a_page_with_one_record_changed_is_read_as_the_json_reader_reads_it(broken: bytes) -> None:
    body = trades_page()
    second = body.index(b"},{") + 2
    original = trade(1)
    name = broken.split(b'"')[1].decode()
    if name in original:
        old = json.dumps({name: original[name]}, separators=(",", ":"))[1:-1].encode()
        at = body.index(old, second)
        changed = body[:at] + broken + body[at + len(old) :]
    else:  # a field the record does not have: before its price
        at = body.index(b'"p":', second)
        changed = body[:at] + broken + b"," + body[at:]
    assert changed != body
    agrees(changed, "trades", ["AAPL"], _TRADE)


def third(body: bytes, old: bytes, new: bytes) -> bytes:
    """``body`` with the third ``old`` (in the third record, the first two read as they are)
    made ``new``."""
    at = body.index(old, body.index(old, body.index(old) + 1) + 1)
    return body[:at] + new + body[at + len(old) :]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.replace(b',"x"', b', "x"', 1),  # whitespace between tokens
        lambda b: b.replace(b"},{", b"}\n,{", 1),
        lambda b: b + b"{}",
        lambda b: b[:-1],
        lambda b: b.replace(b'"next_page_token"', b'"other":1,"next_page_token"'),
        lambda b: b.replace(b'{"trades":{', b'{"trades":{"AAPL":[],', 1),  # a symbol twice
        lambda b: b.replace(b'"AAPL"', b'"MSFT"'),  # a symbol not asked for
        lambda b: b.replace(b'{"t":', b'{"x":"V","t":', 2).replace(b'"x":"V","p"', b'"p"', 1),
        lambda b: b.replace(b"},{", b"}],[{", 1),
        lambda b: b.replace(b"},{", b"}{", 1),
        lambda b: third(b, b"},{", b",,{"),
        lambda b: third(b, b"},{", b"}[{"),
        lambda b: third(b, b'"z":"C","u"', b'"z":"C",!"u"'),
        lambda b: third(b, b'"c":["@","T"]', b'"c":["@",!"T"]'),
        lambda b: third(b, b'"c":["@","T"]', b'"c":["@", "T"]'),
        lambda b: third(b, b'{"t"', b'{!"t"'),
        lambda b: third(b, b'"x":"V",', b'"x":"V"!'),
        lambda b: third(b, b'"z":"C"},{"t"', b'"z":"C,{"t"'),  # a "{" in a string
        lambda b: b.replace(b'"z":"C"}', b'"z":"C"', 1),
        lambda b: b.replace(b'"z":"C"', b'"z":"C","u":"canceled","u":"x"', 1),
        lambda b: b.replace(b'"next_page_token":"abc"', b'"next_page_token":7'),
        lambda b: b.replace(b'"next_page_token":"abc"', b'"next_page_token":{"t":"a"}'),
    ],
)
def test_a_page_shaped_otherwise_or_broken_is_left_to_the_json_reader(mutate: Any) -> None:
    body = trades_page()
    changed = mutate(body)
    assert changed != body
    assert not agrees(changed, "trades", ["AAPL"], _TRADE)


@st.composite
def trade_pages(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    names = draw(st.lists(st.sampled_from(["A", "BRK.B", "MSFT", "T"]), min_size=1, max_size=3, unique=True))  # fmt: skip
    codes = st.text(alphabet=" @TIF,]{}[:", min_size=1, max_size=2)
    record = st.fixed_dictionaries(
        {
            "t": st.builds(rfc3339, st.integers(0, 2**62), st.integers(0, 9)),
            "x": st.sampled_from("VKPQ"),
            "p": st.one_of(st.integers(0, 10**6), st.decimals(0, 10**6, places=4).map(float)),
            "s": st.one_of(st.integers(1, 10**6), st.floats(0.001, 10**4, allow_nan=False)),
            "c": st.lists(codes, max_size=4),
            "i": st.integers(0, 2**62),
            "z": st.sampled_from("ABC"),
        },
        optional={"u": st.sampled_from(["canceled", "corrected", "incorrect"])},
    )
    records = {s: draw(st.lists(record, min_size=0, max_size=25)) for s in names}
    token = draw(st.one_of(st.none(), st.text(alphabet="ABCxyz0=", max_size=12)))
    return page(records, token=token), names


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trade_pages())
def test_generated_pages_read_fast_equal_the_json_reader(drawn: tuple[bytes, list[str]]) -> None:
    body, names = drawn
    agrees(body, "trades", names, _TRADE)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**6), st.integers(0, 4),
    st.binary(max_size=3).map(lambda b: bytes(c % 96 + 32 for c in b)) | st.sampled_from(
        [b'"', b",", b":", b"{", b"}", b"[", b"]", b"0", b"-", b".", b'""', b"},{", b'"u"']
    ),
)  # fmt: skip
def test_a_page_broken_anywhere_is_never_read_other_than_the_json_reader_reads_it(
    where: int, cut: int, put: bytes
) -> None:
    body = trades_page(30)
    at = where % len(body)
    agrees(body[:at] + put + body[at + cut :], "trades", ["AAPL"], _TRADE)


def test_parse_response_gives_the_same_table_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ClientConfig(base_url="https://data.example.test", api_key="k", api_secret="s")
    trades = AlpacaTickClient(config, kind=Timeframe.TRADES)
    body = page({"AAPL": [trade(n) for n in range(30)], "MSFT": [trade(n) for n in range(30)]})
    fast, token = trades.parse_response(body, symbols=["AAPL", "MSFT"])
    monkeypatch.setattr("marketpipe_alpaca.ticks.read_records", lambda *a, **k: None)
    slow, same = trades.parse_response(body, symbols=["AAPL", "MSFT"])
    assert fast.equals(slow) and token == same == "abc" and fast.num_rows == 60
    assert fast["correction"].to_pylist()[:4] == ["regular", "regular", "regular", "canceled"]
    broken = body.replace(b'"p":', b'"p":"', 1)
    with pytest.raises(MalformedResponseError, match="does not decode"):
        trades.parse_response(broken, symbols=["AAPL", "MSFT"])


def test_the_fast_reader_is_the_one_that_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compact page never reaches pyarrow's JSON reader (so the tests above test the fast
    reader, not the fallback)."""
    config = ClientConfig(base_url="https://data.example.test", api_key="k", api_secret="s")
    trades = AlpacaTickClient(config, kind=Timeframe.TRADES)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the JSON reader was asked")

    monkeypatch.setattr("marketpipe_alpaca.ticks.read_page", refuse)
    table, _ = trades.parse_response(trades_page(), symbols=["AAPL"])
    assert table.num_rows == 40
    assert page_records.read_records(b"{}", "trades", ["AAPL"], _TRADE) is None


def test_tick_pages_are_decoded_on_the_event_loop_and_bar_pages_beside_it(
    httpx_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """page_records makes many short numpy calls: in a thread they handed the GIL to and fro
    with the loop's thread (0.9 us a trade against 0.5); pyarrow's reader, one call releasing
    the GIL, still decodes bar pages in a thread."""
    import re
    import threading

    from alpaca_helpers import page as bars_page
    from marketpipe_alpaca.client import AlpacaClient

    config = ClientConfig(base_url="https://data.example.test", api_key="k", api_secret="s")
    last = page({"AAPL": [trade(n) for n in range(40)]}, token=None)
    httpx_mock.add_response(url=re.compile(r".*/v2/stocks/trades.*"), content=last)
    httpx_mock.add_response(url=re.compile(r".*/bars.*"), json=bars_page([]))
    seen: dict[str, int] = {}
    for cls, name in ((AlpacaTickClient, "ticks"), (AlpacaClient, "bars")):
        parse = cls.parse_response

        def spy(self: Any, *args: Any, _parse: Any = parse, _name: str = name, **kw: Any) -> Any:
            seen[_name] = threading.get_ident()
            return _parse(self, *args, **kw)

        monkeypatch.setattr(cls, "parse_response", spy)

    async def fetch() -> int:
        loop = threading.get_ident()
        ticks = AlpacaTickClient(config, kind=Timeframe.TRADES)
        bars = AlpacaClient(config)
        table = await ticks.async_fetch_batch("AAPL", 0, 10**18)
        await bars.async_fetch_batch("AAPL", 0, 10**18)
        await ticks.aclose()
        await bars.aclose()
        assert table.num_rows == 40
        return loop

    loop = asyncio.run(fetch())
    assert seen["ticks"] == loop and seen["bars"] != loop
