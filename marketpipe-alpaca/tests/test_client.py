"""AlpacaClient against pytest-httpx: every status, body shape and header it must handle."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import re
import time

import httpx
import pytest
from alpaca_helpers import BASE, KEY, SECRET, bar, page
from marketpipe.fetch import (
    AuthenticationError,
    EntitlementError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    backoff,
    retry_after,
    should_retry,
)
from marketpipe.ingestion import Timeframe
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe_alpaca.client import AlpacaClient
from pytest_httpx import HTTPXMock

START = dt.datetime(2024, 3, 4, 14, 30, tzinfo=dt.UTC)
END = dt.datetime(2024, 3, 4, 20, 59, 59, tzinfo=dt.UTC)
SINGLE = re.compile(re.escape(BASE) + r"/v2/stocks/AAPL/bars.*")
MULTI = re.compile(re.escape(BASE) + r"/v2/stocks/bars.*")


def fetch(client: AlpacaClient, symbol: object = "AAPL", timeframe: Timeframe = Timeframe.M1):
    return client.fetch_batch(symbol, START, END, timeframe=timeframe)


def test_request_sends_rfc3339_bounds_limit_feed_and_auth_headers(
    client: AlpacaClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:30:00Z")]))
    table = fetch(client)
    request = httpx_mock.get_requests()[0]
    assert request.url.path == "/v2/stocks/AAPL/bars"
    assert dict(request.url.params) == {
        "timeframe": "1Min",
        "start": "2024-03-04T14:30:00Z",
        "end": "2024-03-04T20:59:59Z",
        "limit": "10000",
        "feed": "iex",
        "adjustment": "raw",
        "sort": "asc",
    }
    assert request.headers["APCA-API-KEY-ID"] == KEY
    assert request.headers["APCA-API-SECRET-KEY"] == SECRET
    assert "gzip" in request.headers["Accept-Encoding"]
    assert (
        table.schema.remove_metadata().equals(BAR_SCHEMA.remove_metadata(), check_metadata=False)
        or table.num_rows == 1
    )


@pytest.mark.parametrize(
    ("timeframe", "alpaca"),
    [
        (Timeframe.M1, "1Min"),
        (Timeframe.M5, "5Min"),
        (Timeframe.M15, "15Min"),
        (Timeframe.M30, "30Min"),
        (Timeframe.H1, "1Hour"),
        (Timeframe.D1, "1Day"),
    ],
)
def test_every_timeframe_maps_to_alpacas(
    client: AlpacaClient, timeframe: Timeframe, alpaca: str
) -> None:
    params = client.build_request_params("AAPL", START, END, None, timeframe=timeframe)
    assert params["timeframe"] == alpaca


def test_naive_datetimes_are_refused(client: AlpacaClient) -> None:
    with pytest.raises(ValueError, match="naive"):
        client.build_request_params("AAPL", dt.datetime(2024, 1, 2), END, None)


def test_pages_are_followed_until_the_token_is_null(
    client: AlpacaClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:30:00Z")], token="P2"))
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:31:00Z")], token="P3"))
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:32:00Z", o=976)]))
    table = fetch(client)
    tokens = [r.url.params.get("page_token") for r in httpx_mock.get_requests()]
    assert tokens == [None, "P2", "P3"]
    assert table.num_rows == 3 and table["open"].to_pylist()[-1] == 976.0
    assert table["timestamp"][0].as_py() == dt.datetime(2024, 3, 4, 14, 30, tzinfo=dt.UTC)


def test_a_repeated_page_token_is_malformed_not_an_endless_loop(
    client: AlpacaClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        url=SINGLE, json=page([bar("2024-03-04T14:30:00Z")], token="SAME"), is_reusable=True
    )
    with pytest.raises(MalformedResponseError, match="same page cursor twice"):
        fetch(client)


def test_multi_symbol_pages_pack_symbols_and_missing_symbols_are_zero_bars(
    client: AlpacaClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        url=MULTI, json={"bars": {"AAPL": [bar("2024-03-04T14:30:00Z")]}, "next_page_token": "N"}
    )
    httpx_mock.add_response(
        url=MULTI,
        json={
            "bars": {"BRK.B": [bar("2024-03-04T14:30:00Z"), bar("2024-03-04T14:31:00Z")]},
            "next_page_token": None,
        },
    )
    table = fetch(client, ["AAPL", "BRK.B", "NOPE"])
    request = httpx_mock.get_requests()[0]
    assert request.url.params["symbols"] == "AAPL,BRK.B,NOPE"
    assert table["symbol"].to_pylist() == ["AAPL", "BRK.B", "BRK.B"]


@pytest.mark.parametrize(
    "body",
    [
        {"bars": {}, "next_page_token": None},
        {"bars": [], "next_page_token": None},
        {"bars": None, "next_page_token": None},
        {},
    ],
)
@pytest.mark.parametrize("symbols", ["AAPL", ["AAPL", "MSFT"]])
def test_every_empty_shape_is_zero_bars(
    client: AlpacaClient, httpx_mock: HTTPXMock, body: dict, symbols: object
) -> None:
    httpx_mock.add_response(url=re.compile(re.escape(BASE) + ".*"), json=body)
    assert fetch(client, symbols).num_rows == 0


def test_symbols_are_escaped_in_the_path(client: AlpacaClient) -> None:
    assert client.endpoint("MDGN+") == "/v2/stocks/MDGN%2B/bars"
    assert client.endpoint("BRK.B") == "/v2/stocks/BRK.B/bars"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(
    client: AlpacaClient, httpx_mock: HTTPXMock, status: int
) -> None:
    httpx_mock.add_response(url=SINGLE, status_code=status, text="try later")
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:30:00Z")]))
    assert fetch(client).num_rows == 1
    assert len(httpx_mock.get_requests()) == 2


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed connection without sending complete body"),
    ],
)
def test_timeouts_resets_and_truncated_transfers_are_retried(
    client: AlpacaClient, httpx_mock: HTTPXMock, exc: Exception
) -> None:
    httpx_mock.add_exception(exc, url=SINGLE)
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:30:00Z")]))
    assert fetch(client).num_rows == 1


@pytest.mark.parametrize(
    "body", [b'{"bars": [{"t": "2024-03-04T14:30:00Z", "o": 1', b"<html>oops</html>", b""]
)
def test_undecodable_200_bodies_are_retried(
    client: AlpacaClient, httpx_mock: HTTPXMock, body: bytes
) -> None:
    httpx_mock.add_response(url=SINGLE, content=body)
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:30:00Z")]))
    assert fetch(client).num_rows == 1


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (
            401,
            {"message": "unauthorized"},
            AuthenticationError,
            "APCA_API_KEY_ID and APCA_API_SECRET_KEY",
        ),
        (
            403,
            {"message": "forbidden"},
            AuthenticationError,
            "APCA_API_KEY_ID and APCA_API_SECRET_KEY",
        ),
        (
            403,
            {"code": 42210000, "message": "subscription does not permit querying recent SIP data"},
            EntitlementError,
            "use --feed iex, or end the range at least 15 minutes ago",
        ),
        (
            422,
            {"message": "subscription does not permit querying recent SIP data"},
            EntitlementError,
            "--feed iex",
        ),
        (
            422,
            {"code": 42210000, "message": "invalid timeframe"},
            InvalidRequestError,
            "invalid timeframe",
        ),
        (
            400,
            {"code": 40010000, "message": "unexpected parameter(s): timeframe"},
            InvalidRequestError,
            "unexpected parameter(s): timeframe",
        ),
        (404, {"message": "Not Found"}, InvalidRequestError, "check base_url"),
    ],
)
def test_client_errors_are_typed_explained_and_never_retried(
    client: AlpacaClient, httpx_mock: HTTPXMock, status: int, body: dict, error: type, text: str
) -> None:
    httpx_mock.add_response(url=SINGLE, status_code=status, json=body)
    with pytest.raises(error) as caught:
        fetch(client)
    assert text in str(caught.value)
    assert len(httpx_mock.get_requests()) == 1
    assert KEY not in str(caught.value) and SECRET not in str(caught.value)


def test_persistent_server_errors_end_as_provider_unavailable(
    client: AlpacaClient, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_response(url=SINGLE, status_code=503, text="down", is_reusable=True)
    with pytest.raises(ProviderUnavailableError, match="HTTP 503"):
        fetch(client)
    assert len(httpx_mock.get_requests()) == 4 and len(sleeps) == 3


def test_persistent_429_ends_as_rate_limited(httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    """429s are retried until the request's total time (outside a job) is spent: 2 s here,
    not the default 300 s a test would wait out in real time."""
    from marketpipe.fetch import ClientConfig, RateLimiter

    config = ClientConfig(
        base_url=BASE, api_key=KEY, api_secret=SECRET, max_attempts=4, max_total_seconds=2.0
    )
    client = AlpacaClient(config, rate_limiter=RateLimiter(10_000, 60.0))
    httpx_mock.add_response(
        url=SINGLE,
        status_code=429,
        json={"code": 42910000, "message": "too many requests"},
        is_reusable=True,
    )
    started = time.monotonic()
    with pytest.raises(RateLimitedError, match="rate_limit"):
        fetch(client)
    assert time.monotonic() - started < 30
    assert len(httpx_mock.get_requests()) > 4  # a 429 is not a failed attempt


def test_retry_after_seconds_and_http_date_are_honoured(
    client: AlpacaClient, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    later = email.utils.format_datetime(
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=7), usegmt=True
    )
    httpx_mock.add_response(url=SINGLE, status_code=429, headers={"Retry-After": "3"})
    httpx_mock.add_response(url=SINGLE, status_code=503, headers={"Retry-After": later})
    httpx_mock.add_response(url=SINGLE, json=page([]))
    fetch(client)
    assert sleeps[0] == pytest.approx(3.0)
    # (the rate limiter's hold after the 429 shows up too: sleeps are instant here)
    assert any(5.0 <= s <= 7.5 for s in sleeps[1:])


def test_x_ratelimit_reset_is_honoured(
    client: AlpacaClient, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    reset = str(int(time.time()) + 4)
    httpx_mock.add_response(
        url=SINGLE,
        status_code=429,
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
    )
    httpx_mock.add_response(url=SINGLE, json=page([]))
    fetch(client)
    assert 2.5 <= sleeps[0] <= 4.5


def test_total_retry_time_is_bounded(httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    from marketpipe.fetch import ClientConfig, RateLimiter

    config = ClientConfig(
        base_url=BASE, api_key=KEY, api_secret=SECRET, max_attempts=10, max_total_seconds=5.0
    )
    client = AlpacaClient(config, rate_limiter=RateLimiter(1000, 60.0))
    httpx_mock.add_response(
        url=SINGLE, status_code=429, headers={"Retry-After": "60"}, is_reusable=True
    )
    with pytest.raises(RateLimitedError):
        fetch(client)
    assert len(httpx_mock.get_requests()) == 1 and sleeps == []


def test_async_twin_paginates_and_retries(client: AlpacaClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=SINGLE, status_code=500)
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:30:00Z")], token="P2"))
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=SINGLE)
    httpx_mock.add_response(url=SINGLE, json=page([bar("2024-03-04T14:31:00Z")]))

    async def run():
        try:
            return await client.async_fetch_batch("AAPL", START, END, timeframe=Timeframe.M1)
        finally:
            await client.aclose()

    assert asyncio.run(run()).num_rows == 2
    assert len(httpx_mock.get_requests()) == 4


def test_retry_policy_functions() -> None:
    assert [should_retry(s) for s in (429, 500, 502, 503, 504)] == [True] * 5
    assert [should_retry(s) for s in (400, 401, 403, 404, 422)] == [False] * 5
    for attempt in range(8):
        assert 0.0 <= backoff(attempt, 0.5, 10.0) <= min(10.0, 0.5 * 2**attempt)
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None
    assert (
        retry_after({"x-ratelimit-reset": "1010", "x-ratelimit-remaining": "5"}, now=1000) is None
    )
    assert retry_after({"x-ratelimit-reset": "1010", "x-ratelimit-remaining": "0"}, now=1000) == 10


def test_secrets_stay_out_of_reprs(client: AlpacaClient) -> None:
    text = repr(client) + repr(client.auth) + repr(client.config) + str(client.config)
    assert KEY not in text and SECRET not in text
    assert json.dumps(client.build_request_params("AAPL", START, END, None)).find(KEY) == -1


EMPTY_SHAPES = [
    b'{"bars": null, "next_page_token": null}',
    b'{"bars": {}, "next_page_token": null}',
    b'{"bars": [], "next_page_token": null}',
    b"{}",
    b'{"bars": {}}',
    b'{"next_page_token": null}',
]


@pytest.mark.parametrize("empty", EMPTY_SHAPES)
@pytest.mark.parametrize("symbols", ["AAPL", ["AAPL", "MSFT"]])
@pytest.mark.parametrize("position", ["last", "middle"])
def test_an_empty_page_anywhere_in_a_chain_is_zero_bars_with_the_full_pages_schema(
    client: AlpacaClient, httpx_mock: HTTPXMock, empty: bytes, symbols: object, position: str
) -> None:
    url = SINGLE if isinstance(symbols, str) else MULTI
    multi = not isinstance(symbols, str)

    def full(token: str | None, minute: int) -> dict:
        bars = [bar(f"2024-03-04T14:{minute:02d}:00Z")]
        if multi:
            return {"bars": {"AAPL": bars}, "next_page_token": token}
        return page(bars, token=token)

    httpx_mock.add_response(url=url, json=full("P2", 30))
    if position == "middle":
        middle = json.loads(empty)
        middle["next_page_token"] = "P3"
        httpx_mock.add_response(url=url, json=middle)
        httpx_mock.add_response(url=url, json=full(None, 31))
    else:
        httpx_mock.add_response(url=url, content=empty)
    table = fetch(client, symbols)
    assert table.num_rows == (2 if position == "middle" else 1)
    assert table["symbol"].to_pylist() == ["AAPL"] * table.num_rows
    assert table.schema.names == BAR_SCHEMA.names


@pytest.mark.parametrize(
    "body", [b"null", b" null ", b"null null", b"5", b"[]", b"[{}]", b'"bars"', b"true", b"nul"]
)
@pytest.mark.parametrize("symbols", ["AAPL", ["AAPL", "MSFT"]])
def test_a_body_that_is_not_one_json_object_is_malformed_never_a_crash(
    client: AlpacaClient, body: bytes, symbols: object
) -> None:
    # pyarrow 26's JSON reader segfaults on a leading null: the client checks the shape first.
    with pytest.raises(MalformedResponseError, match="not a JSON object"):
        client.parse_response(body, symbols=symbols)


@pytest.mark.parametrize("body", [b"{} {}", b'{"bars": []} null', b"{}\n{}"])
def test_more_than_one_json_value_is_malformed(client: AlpacaClient, body: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        client.parse_response(body, symbols="AAPL")


def test_a_page_chain_bringing_more_bars_than_the_range_holds_ends(
    client: AlpacaClient, httpx_mock: HTTPXMock
) -> None:
    # 14:30 to 20:59:59 holds 390 one-minute bars; a server repeating them forever is cut off.
    bars = [bar(f"2024-03-04T{14 + (30 + i) // 60}:{(30 + i) % 60:02d}:00Z") for i in range(300)]
    for i in range(5):
        httpx_mock.add_response(url=SINGLE, json=page(bars, token=f"T{i}"), is_optional=True)
    with pytest.raises(MalformedResponseError, match="more bars"):
        fetch(client)
    assert len(httpx_mock.get_requests()) == 2
