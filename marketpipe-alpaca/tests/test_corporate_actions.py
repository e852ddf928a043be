"""Alpaca's /v1/corporate-actions against pytest-httpx: every type, pages, bad shapes.

The bodies in ``fixtures/`` are written for these tests from the shapes in Alpaca's reference and
in its SDKs' tests (every type, a type MarketPipe does not know, a record without an id).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
from alpaca_helpers import BASE, KEY, SECRET
from marketpipe.fetch import MalformedResponseError
from marketpipe.model.actions import ACTION_SCHEMA, check_actions
from marketpipe_alpaca.client import AlpacaClient
from marketpipe_alpaca.provider import AlpacaMarketDataAdapter
from pytest_httpx import HTTPXMock

FIXTURES = Path(__file__).parent / "fixtures"
ACTIONS = re.compile(re.escape(BASE) + r"/v1/corporate-actions.*")
START, END = dt.date(2023, 1, 1), dt.date(2024, 12, 31)


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def adapter(sleeps: list[float]) -> AlpacaMarketDataAdapter:
    return AlpacaMarketDataAdapter(KEY, SECRET, base_url=BASE)


def by_id(table: pa.Table) -> dict[str, dict[str, object]]:
    return {row["id"]: row for row in table.to_pylist()}


def test_every_type_is_parsed_across_pages_and_an_unknown_type_is_kept(
    adapter: AlpacaMarketDataAdapter, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    httpx_mock.add_response(url=ACTIONS, content=body("corporate_actions_page1.json"))
    httpx_mock.add_response(url=ACTIONS, content=body("corporate_actions_page2.json"))
    table = adapter.fetch_actions(["NVDA", "AAPL"], START, END)
    first, second = httpx_mock.get_requests()
    assert dict(first.url.params) == {
        "symbols": "NVDA,AAPL",
        "start": "2023-01-01",
        "end": "2024-12-31",
        "limit": "1000",
        "sort": "asc",
    }
    assert first.headers["APCA-API-KEY-ID"] == KEY
    assert second.url.params["page_token"] == "cGFnZS0y"
    assert table.schema.equals(ACTION_SCHEMA, check_metadata=False)
    assert table.num_rows == 15
    rows = by_id(table)
    kinds = sorted(str(r["kind"]) for r in rows.values())
    assert kinds == sorted(
        ["forward_split", "reverse_split", "unit_split", "stock_dividend", "cash_dividend",
         "spin_off", "cash_merger", "stock_merger", "stock_and_cash_merger", "redemption",
         "name_change", "worthless_removal", "rights_distribution", "unknown", "cash_dividend"]
    )  # fmt: skip
    split = rows["0f5e1a9c-0001-4c5e-9d1e-000000000001"]
    assert (split["symbol"], split["old_rate"], split["new_rate"]) == ("NVDA", 1.0, 10.0)
    assert split["ex_date"] == dt.date(2024, 6, 10) and split["cusip"] == "67066G104"
    reverse = rows["0f5e1a9c-0002-4c5e-9d1e-000000000002"]
    assert (reverse["old_rate"], reverse["new_rate"]) == (50.0, 1.0)
    assert (reverse["cusip"], reverse["new_cusip"]) == ("553723104", "553723203")
    unit = rows["0f5e1a9c-0003-4c5e-9d1e-000000000003"]
    assert (unit["symbol"], unit["new_symbol"], unit["ex_date"]) == (
        "TPBAU",
        "LVRO",
        dt.date(2023, 3, 1),
    )
    dividend = rows["0f5e1a9c-0005-4c5e-9d1e-000000000005"]
    assert (dividend["symbol"], dividend["rate"], dividend["ex_date"]) == (
        "AAPL",
        0.25,
        dt.date(2024, 5, 10),
    )
    assert dividend["process_date"] == dt.date(2024, 5, 16)
    spin = rows["0f5e1a9c-0006-4c5e-9d1e-000000000006"]
    assert (spin["symbol"], spin["new_symbol"], spin["old_rate"]) == ("JUPW", "SRM", 19.35)
    merger = rows["0f5e1a9c-0009-4c5e-9d1e-000000000009"]
    assert (merger["symbol"], merger["new_symbol"], merger["rate"]) == ("MLVF", "FRBA", 7.8)
    assert merger["ex_date"] == dt.date(2023, 7, 18)  # the effective date
    rename = rows["0f5e1a9c-0011-4c5e-9d1e-000000000011"]
    assert (rename["symbol"], rename["new_symbol"], rename["ex_date"]) == (
        "BSAQ",
        "VFS",
        dt.date(2023, 8, 15),  # no ex-date: the process date
    )
    unknown = rows["0f5e1a9c-0014-4c5e-9d1e-000000000014"]
    assert unknown["kind"] == "unknown" and unknown["symbol"] == "XYZ"
    assert json.loads(str(unknown["record"]))["type"] == "dividend_reinvestments"
    assert "dividend_reinvestments" in caplog.text
    # A record without an id gets a stable one from its content.
    again = next(r for r in rows.values() if r["symbol"] == "ZMTBY")
    assert str(again["id"]).startswith("sha1:")
    assert json.loads(str(again["record"]))["rate"] == 0.086928
    assert {r["provider"] for r in rows.values()} == {"alpaca"}
    # Everything is sound: the ledger's check keeps every record, the unknown one included.
    valid, rejected = check_actions(table)
    assert (valid.num_rows, rejected.num_rows) == (15, 0)


def test_records_that_make_no_sense_are_kept_for_the_ledger_to_set_aside(
    adapter: AlpacaMarketDataAdapter, httpx_mock: HTTPXMock
) -> None:
    bad = {
        "corporate_actions": {
            "forward_splits": [
                {"id": "a", "symbol": "AAA", "old_rate": 1, "new_rate": 0,
                 "process_date": "2024-01-02", "ex_date": "2024-01-02"},
                {"id": "b", "symbol": "BBB", "old_rate": 1, "new_rate": "two",
                 "process_date": "2024-01-02", "ex_date": "2024-01-02"},
                {"id": "c", "symbol": "CCC", "old_rate": 1, "new_rate": 2,
                 "process_date": "2024-01-02"},
            ],
            "cash_dividends": [
                {"id": "d", "symbol": "DDD", "rate": 0.5, "ex_date": "2024-13-01",
                 "process_date": "2024-01-02"},
                {"id": "e", "symbol": "EEE", "rate": 0.5, "ex_date": "2024-01-02"},
            ],
        },
        "next_page_token": None,
    }  # fmt: skip
    httpx_mock.add_response(url=ACTIONS, json=bad)
    valid, rejected = check_actions(adapter.fetch_actions(["AAA"], START, END))
    assert valid.num_rows == 0
    reasons = dict(zip(rejected["id"].to_pylist(), rejected["reason"].to_pylist(), strict=True))
    assert reasons == {
        "a": "a split ratio that is not positive and finite",
        "b": "a split ratio that is not positive and finite",
        "c": "a split without an ex-date",
        "d": "a dividend without an ex-date",
        "e": "a record without process_date",
    }


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"corporate_actions": [1]}', "not an object"),
        (b'{"corporate_actions": {"forward_splits": {"a": 1}}}', "not a list"),
        (b'{"corporate_actions": {"forward_splits": [7]}}', "record that is not an object"),
        (b'{"corporate_actions": {}, "next_page_token": 5}', "not text"),
        (b"<html>", "not JSON"),
    ],
)
def test_bad_shapes_are_one_malformed_error(
    client: AlpacaClient, httpx_mock: HTTPXMock, answer: bytes, why: str
) -> None:
    httpx_mock.add_response(url=ACTIONS, content=answer, is_reusable=True)
    with pytest.raises(MalformedResponseError, match=why) as caught:
        client.fetch_actions(["AAPL"], START, END)
    assert SECRET not in str(caught.value)


def test_a_page_token_that_repeats_ends_the_chain(
    client: AlpacaClient, httpx_mock: HTTPXMock
) -> None:
    page = {"corporate_actions": {}, "next_page_token": "again"}
    httpx_mock.add_response(url=ACTIONS, json=page, is_reusable=True)
    with pytest.raises(MalformedResponseError, match="same corporate-actions page token"):
        client.fetch_actions(["AAPL"], START, END)
    assert len(httpx_mock.get_requests()) == 2


def test_actions_go_through_the_retries_and_the_server_s_wait_like_bars(
    client: AlpacaClient, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_response(url=ACTIONS, status_code=429, headers={"Retry-After": "2"})
    httpx_mock.add_response(url=ACTIONS, content=body("corporate_actions_page2.json"))
    rows, unknown = client.fetch_actions(["ZMTBY"], START, END)
    assert [r["symbol"] for r in rows] == ["ZMTBY"] and unknown == []
    assert client.requests == 2 and max(sleeps) >= 2.0


def test_many_symbols_are_asked_in_chunks(client: AlpacaClient, httpx_mock: HTTPXMock) -> None:
    empty = {"corporate_actions": {}, "next_page_token": None}
    httpx_mock.add_response(url=ACTIONS, json=empty, is_reusable=True)
    symbols = [f"S{i}" for i in range(250)]
    assert client.fetch_actions(symbols, START, END) == ([], [])
    asked = [r.url.params["symbols"].split(",") for r in httpx_mock.get_requests()]
    assert [len(a) for a in asked] == [100, 100, 50]
    assert [s for a in asked for s in a] == symbols
