"""The connector toolkit against real hostile servers on 127.0.0.1: every answer is bounded in
time, memory and page count, and a server's requested wait never outlasts the request."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from typing import Any

import httpx
import pyarrow as pa
import pytest
from marketpipe.fetch import ApiKeyAuth, AuthenticationError
from marketpipe.ingestion.connectors import (
    BaseApiClient,
    ClientConfig,
    MalformedResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    RateLimiter,
    ResponseTooLargeError,
    require_json_object,
)
from marketpipe.model.secrets import scrub
from marketpipe.testing.http import Answer, ScriptedServer, gzip_bomb


class JsonBars(BaseApiClient):
    """A minimal paginated API: ``{"n": rows, "next": cursor}`` pages."""

    provider_name = "scripted"
    bars_possible: int | None = None

    def endpoint(self, symbol: Any) -> str:
        return "/bars"

    def build_request_params(self, symbol, start_ts, end_ts, cursor, **options):  # type: ignore[no-untyped-def]
        return {"cursor": cursor} if cursor else {}

    def parse_response(self, raw_json: bytes, **context: Any) -> tuple[pa.Table, str | None]:
        require_json_object(raw_json, self.provider_name)
        page = json.loads(raw_json)
        table = pa.table({"x": pa.array(range(int(page.get("n", 0))), pa.int64())})
        return table, page.get("next")

    def max_bars(self, symbol: Any, start_ts: Any, end_ts: Any, **options: Any) -> int | None:
        return self.bars_possible


def client(server: ScriptedServer, **config: Any) -> JsonBars:
    settings: dict[str, Any] = {"max_attempts": 1, "backoff_base": 0.01, "backoff_cap": 0.02}
    settings.update(config)
    return JsonBars(ClientConfig(base_url=server.url, **settings), None, RateLimiter(1000, 1.0))


def page(n: int, cursor: str | None = None) -> bytes:
    return json.dumps({"n": n, "next": cursor}).encode()


# -- bounded time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "mode"),
    [
        (Answer(body=page(5) + b" " * 200, trickle=0.05), "sync"),  # body a byte at a time
        (Answer(body=page(5) + b" " * 200, trickle=0.05), "async"),
        (Answer(body=page(5) + b" " * 200, trickle=0.05, chunked=True), "sync"),
        (Answer(body=page(5) + b" " * 200, trickle=0.05, chunked=True), "async"),
        # Jobs use the async path, where the deadline covers the headers too.
        (Answer(body=page(5), header_trickle=0.05), "async"),
    ],
)
def test_a_trickling_server_is_cut_off_at_the_deadline(answer: Answer, mode: str) -> None:
    with ScriptedServer([answer]) as server:
        c = client(server, deadline=1.0, timeout=5.0)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailableError, match=r"within 1\.0 s"):
            if mode == "sync":
                c.fetch_batch("X", 0, 1)
            else:
                asyncio.run(c.async_fetch_batch("X", 0, 1))
        elapsed = time.monotonic() - started
    # Each byte came within the read timeout (5 s): only the deadline can have stopped it.
    assert elapsed < 3.0, elapsed


def test_the_deadline_is_within_the_requests_total_budget() -> None:
    answers = [Answer(status=503, body=b"{}"), Answer(body=page(1) + b" " * 400, trickle=0.05)]
    with ScriptedServer(answers) as server:
        c = client(server, max_attempts=5, deadline=60.0, max_total_seconds=1.5, timeout=5.0)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailableError):
            asyncio.run(c.async_fetch_batch("X", 0, 1))
        assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": str(3 * 86400)},  # three days
        {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 86400)},
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_a_wait_longer_than_the_time_left_fails_at_once_naming_it(
    headers: dict[str, str], status: int
) -> None:
    with ScriptedServer(
        [Answer(status=status, body=b'{"message": "slow down"}', headers=headers)]
    ) as server:
        c = client(server, max_attempts=6, max_total_seconds=60.0)
        started = time.monotonic()
        error = RateLimitedError if status == 429 else ProviderUnavailableError
        with pytest.raises(error, match=r"asked to wait [\d,.]+ h, more than the [\d.]+ s left"):
            asyncio.run(c.async_fetch_batch("X", 0, 1))
        assert time.monotonic() - started < 2.0
        assert len(server.requests) == 1
    # The shared limiter was not put to sleep for days: the next request goes at once.
    assert c.rate_limiter.acquire_slot().wait < 1.0


def test_a_wait_within_the_budget_is_honoured_and_holds_the_limiter() -> None:
    answers = [Answer(status=429, body=b"{}", headers={"Retry-After": "1"}), Answer(body=page(3))]
    with ScriptedServer(answers) as server:
        c = client(server, max_attempts=3)
        started = time.monotonic()
        assert c.fetch_batch("X", 0, 1).num_rows == 3
        assert time.monotonic() - started >= 1.0


# -- bounded memory -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        Answer(body=page(1) + b" " * 3_000_000),  # announced by Content-Length
        Answer(body=page(1) + b" " * 3_000_000, chunked=True),  # no length announced
        Answer(body=b" " * 3_000_000, gzip=True),  # 3 MB that travels as 3 KB
        Answer(body=page(1) + b" " * 3_000_000, gzip=True, chunked=True),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_body_past_the_cap_is_refused_and_not_retried(answer: Answer, mode: str) -> None:
    with ScriptedServer([answer]) as server:
        c = client(server, max_attempts=4, max_body_bytes=1_000_000)
        with pytest.raises(ResponseTooLargeError, match="more than 1,000,000 bytes"):
            if mode == "sync":
                c.fetch_batch("X", 0, 1)
            else:
                asyncio.run(c.async_fetch_batch("X", 0, 1))
        assert len(server.requests) == 1


def test_a_gzip_bomb_is_stopped_while_it_inflates() -> None:
    bomb = gzip_bomb(400 * 2**20)  # 400 MiB of spaces, about 400 KB on the wire
    answer = Answer(body=bomb, headers={"Content-Encoding": "gzip"})
    with ScriptedServer([answer]) as server:
        c = client(server, max_body_bytes=2 * 2**20)
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLargeError):
                c.fetch_batch("X", 0, 1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # Inflating stops at the cap inside a read (max_length), far below the 400 MiB the whole
    # body would take, and below what one read inflates to (httpx's way: about 80 MiB).
    assert peak < 16 * 2**20, peak


# -- bounded page chains ------------------------------------------------------------------------


def test_empty_pages_that_keep_pointing_on_end_the_chain() -> None:
    answers = [Answer(body=page(0, f"token-{i}")) for i in range(50)]
    with ScriptedServer(answers) as server:
        with pytest.raises(MalformedResponseError, match="3 empty pages in a row"):
            client(server).fetch_batch("X", 0, 1)
        assert len(server.requests) == 3


def test_a_chain_bringing_more_bars_than_the_request_holds_ends() -> None:
    answers = [Answer(body=page(10, f"token-{i}")) for i in range(50)]
    with ScriptedServer(answers) as server:
        c = client(server)
        c.bars_possible = 35
        with pytest.raises(MalformedResponseError, match=r"more bars \(40 by page 4\)"):
            c.fetch_batch("X", 0, 1)


def test_a_chain_past_max_pages_ends() -> None:
    answers = [Answer(body=page(1, f"token-{i}")) for i in range(50)]
    with ScriptedServer(answers) as server:
        with pytest.raises(MalformedResponseError, match="past 5 pages"):
            asyncio.run(client(server, max_pages=5).async_fetch_batch("X", 0, 1))
        assert len(server.requests) == 5


def test_a_chain_with_an_empty_page_inside_or_last_keeps_every_bar() -> None:
    answers = [
        Answer(body=page(4, "a")),
        Answer(body=page(0, "b")),
        Answer(body=page(3, "c")),
        Answer(body=page(0)),
    ]
    with ScriptedServer(answers) as server:
        assert client(server).fetch_batch("X", 0, 1).num_rows == 7


# -- shape before parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"null", b"  null  ", b"5", b"[]", b"[1, 2]", b"null null", b'"text"', b"true", b"", b"\n"],
)
def test_a_body_that_is_not_a_json_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponseError, match="not a JSON object"):
        require_json_object(body, "scripted")


def test_config_refuses_bounds_that_are_not_bounds() -> None:
    for bad in (
        {"deadline": 0},
        {"deadline": float("inf")},
        {"timeout": float("nan")},
        {"max_attempts": 0},
        {"max_attempts": 2.5},
        {"max_body_bytes": -1},
        {"max_pages": True},
    ):
        with pytest.raises(ValueError, match="must be"):
            ClientConfig(base_url="http://127.0.0.1:1", **bad)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_waiting_for_a_rate_limit_slot_is_not_the_requests_own_time(mode: str) -> None:
    """A slow gateway's pace (1 request a second) queues requests for longer than a request may
    take (0.6 s): each still gets its whole deadline once its slot comes."""
    with ScriptedServer([Answer(body=page(1))]) as server:
        c = JsonBars(
            ClientConfig(base_url=server.url, max_attempts=1, deadline=0.6, max_total_seconds=0.6),
            None,
            RateLimiter(1, 1.0),
        )
        if mode == "sync":
            tables = [c.fetch_batch("X", 0, 1) for _ in range(3)]
        else:

            async def three() -> list[pa.Table]:
                return list(
                    await asyncio.gather(*(c.async_fetch_batch("X", 0, 1) for _ in range(3)))
                )

            tables = asyncio.run(three())
        assert [t.num_rows for t in tables] == [1, 1, 1]


def test_a_401_is_an_authentication_error_without_a_classify_error_of_ones_own() -> None:
    with ScriptedServer([Answer(status=401, body=b'{"message": "bad key"}')]) as server:
        with pytest.raises(AuthenticationError, match=r"refused the credentials \(HTTP 401\)"):
            client(server).fetch_batch("X", 0, 1)
        assert len(server.requests) == 1  # never retried


def test_one_api_key_as_bearer_header_or_query_parameter() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(answer)
    for auth in (ApiKeyAuth("k3y-v4lue"), ApiKeyAuth("k3y-v4lue", header="X-API-Key"),
                 ApiKeyAuth("k3y-v4lue", query="apiKey")):  # fmt: skip
        with httpx.Client(transport=transport, auth=auth) as c:
            c.get("https://api.example.test/v2/aggs", params={"limit": "5"})
        assert "k3y-v4lue" not in repr(auth)
    bearer, header, query = seen
    assert bearer.headers["Authorization"] == "Bearer k3y-v4lue"
    assert header.headers["X-API-Key"] == "k3y-v4lue" and "Authorization" not in header.headers
    assert dict(query.url.params) == {"limit": "5", "apiKey": "k3y-v4lue"}
    # A message that quotes the URL is scrubbed like every other.
    assert "k3y-v4lue" not in scrub(f"GET {query.url} failed")


# -- cost per request ---------------------------------------------------------------------------


def test_an_async_request_looks_for_no_module() -> None:
    """Each request's work is the request's: none of it is a search of sys.path. (httpcore
    imports sniffio on every async request; without it installed, each failed import scanned
    the path, 0.4 ms a request, a twentieth of an Alpaca ingest's CPU.)"""
    import sys

    searched: list[str] = []

    class Watch:
        @staticmethod
        def find_spec(name: str, *args: Any) -> None:
            searched.append(name)

    answers = [Answer(body=page(1, f"t{i}" if i < 9 else None), gzip=i % 2 == 0) for i in range(10)]

    async def twice(c: JsonBars) -> pa.Table:
        await c.async_fetch_batch("X", 0, 1)  # the first: connections, codecs, imports
        sys.meta_path.insert(0, Watch)
        try:
            return await c.async_fetch_batch("X", 0, 1)
        finally:
            sys.meta_path.remove(Watch)

    with ScriptedServer(answers * 2) as server:
        table = asyncio.run(twice(client(server)))
    assert table.num_rows == 10
    assert searched == []


def test_the_time_a_request_may_retry_is_set_for_every_connector_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marketpipe.fetch.config import ClientConfig
    from marketpipe.model.errors import InvalidInputError
    from marketpipe.storage.retry import StoreRetry

    monkeypatch.delenv("MARKETPIPE_HTTP_RETRY_SECONDS", raising=False)
    assert ClientConfig(base_url="http://x.test").max_total_seconds == 300.0
    monkeypatch.setenv("MARKETPIPE_HTTP_RETRY_SECONDS", "7.5")
    assert ClientConfig(base_url="http://x.test").max_total_seconds == 7.5
    assert ClientConfig(base_url="http://x.test", max_total_seconds=60).max_total_seconds == 60
    assert StoreRetry.shared({}).retry_seconds == 300.0  # the store has its own setting
    monkeypatch.setenv("MARKETPIPE_HTTP_RETRY_SECONDS", "-1")
    with pytest.raises(InvalidInputError, match="got '-1'"):
        ClientConfig(base_url="http://x.test")
    for bad in ("nan", "inf"):  # the store's setting is read the same way
        with pytest.raises(InvalidInputError, match="MARKETPIPE_STORE_RETRY_SECONDS must be"):
            StoreRetry.shared({"MARKETPIPE_STORE_RETRY_SECONDS": bad})


def test_a_body_inflated_in_one_piece_is_not_copied() -> None:
    """The chunks of a body are joined once at the end, and a body inflated in one piece (a
    page's gathered raw chunks) is returned as inflated: no copy of a 915 KB page of trades."""
    from marketpipe.fetch.body import BodyReader

    body = BodyReader(httpx.Response(200), cap=10_000, provider="x")
    one = b"x" * 1000
    for chunk in (b"", b"", one, b""):
        body.add(chunk)
    assert body.body() is one and body.size == 1000
