"""``AlpacaClient``: Alpaca Market Data v2 bars, decoded straight into Arrow columns.

Pages are parsed by pyarrow's JSON reader against an explicit schema, so a 10,000-bar page becomes
columns in C++ without a Python object per bar (a JSON library such as orjson or msgspec would
still build one dict or struct per bar).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import pyarrow as pa
import pyarrow.json as pajson
from marketpipe.fetch import (
    AuthenticationError,
    BaseApiClient,
    ClientConfig,
    ConnectorError,
    EntitlementError,
    HeaderTokenAuth,
    InvalidRequestError,
    MalformedResponseError,
    RateLimiter,
    require_json_object,
)
from marketpipe.fetch.client import error_message
from marketpipe.model.schema import BAR_SCHEMA, repeat_string
from marketpipe.model.values import Timeframe

from marketpipe_alpaca.actions import PAGE_LIMIT as ACTION_PAGE_LIMIT
from marketpipe_alpaca.actions import PATH as ACTION_PATH
from marketpipe_alpaca.actions import parse_page

PRODUCTION_URL = "https://data.alpaca.markets"
SANDBOX_URL = "https://data.sandbox.alpaca.markets"
PAGE_LIMIT = 10_000
#: Symbols per corporate-actions query (keeps the URL a sane length).
ACTION_SYMBOLS = 100
TIMEFRAMES = {
    Timeframe.M1: "1Min",
    Timeframe.M5: "5Min",
    Timeframe.M15: "15Min",
    Timeframe.M30: "30Min",
    Timeframe.H1: "1Hour",
    Timeframe.D1: "1Day",
}
_BAR = pa.struct(
    [
        ("t", pa.timestamp("ns", tz="UTC")),
        ("o", pa.float64()),
        ("h", pa.float64()),
        ("l", pa.float64()),
        ("c", pa.float64()),
        ("v", pa.int64()),
        ("n", pa.int64()),
        ("vw", pa.float64()),
    ]
)
_SINGLE = pa.schema(
    [("bars", pa.list_(_BAR)), ("symbol", pa.string()), ("next_page_token", pa.string())]
)
# The canonical columns, all nullable: a bar missing a field is kept and rejected by validation.
_LOOSE = pa.schema([field.with_nullable(True) for field in BAR_SCHEMA])
CREDENTIALS_HINT = (
    "set APCA_API_KEY_ID and APCA_API_SECRET_KEY (or MARKETPIPE_ALPACA_API_KEY_ID and "
    "MARKETPIPE_ALPACA_API_SECRET_KEY, or the config file) to a valid key pair"
)


def api_root(base_url: str) -> str:
    """The server's root: a base URL that already ends in the API version (``.../v2``, with or
    without a slash) loses it, since every path this client asks for starts with ``/v2``."""
    root = base_url.rstrip("/")
    return root[: -len("/v2")] if root.endswith("/v2") else root


def epoch_nanos(moment: int) -> int:
    """UTC nanoseconds from an epoch timestamp in seconds, milliseconds, microseconds or
    nanoseconds (told apart by size, for any moment after 1973)."""
    magnitude = abs(moment)
    if magnitude >= 10**17:
        return moment
    if magnitude >= 10**14:
        return moment * 1_000
    if magnitude >= 10**11:
        return moment * 1_000_000
    return moment * 1_000_000_000


def rfc3339(moment: dt.datetime | int) -> str:
    """``2024-01-02T14:30:00Z`` from an aware datetime or an epoch timestamp (s, ms, us or ns)."""
    if isinstance(moment, int):
        moment = dt.datetime.fromtimestamp(epoch_nanos(moment) // 1_000_000_000, dt.UTC)
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous: pass an aware datetime")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nanos(moment: dt.datetime | int) -> int:
    if isinstance(moment, int):
        return epoch_nanos(moment)
    return int(moment.timestamp()) * 1_000_000_000


def fold_lines(body: bytes) -> bytes:
    """``body`` on one line: pyarrow's JSON reader takes one document a line, and a line break
    in JSON is whitespace (strings cannot hold a raw one)."""
    if b"\n" in body or b"\r" in body:
        return body.replace(b"\n", b" ").replace(b"\r", b" ")
    return body


def read_page(body: bytes, schema: pa.Schema) -> pa.Table:
    """One JSON page (on one line: :func:`fold_lines`) read against ``schema`` by pyarrow's
    JSON reader, fields it does not name ignored; raises pyarrow's errors for a body that does
    not fit."""
    return pajson.read_json(
        io.BytesIO(body),
        read_options=pajson.ReadOptions(block_size=len(body) + 1, use_threads=False),
        parse_options=pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"
        ),
    )


def _columns(symbol: str | pa.Array, bars: pa.StructArray) -> pa.Table:
    n = len(bars)
    sym = repeat_string(symbol, n) if isinstance(symbol, str) else symbol
    return pa.Table.from_arrays(
        [
            sym,
            bars.field("t"),
            bars.field("o"),
            bars.field("h"),
            bars.field("l"),
            bars.field("c"),
            bars.field("v"),
            bars.field("n"),
            bars.field("vw"),
        ],
        schema=_LOOSE,
    )


class AlpacaClient(BaseApiClient):
    """Bars from ``/v2/stocks/{symbol}/bars`` (one symbol) or ``/v2/stocks/bars`` (several)."""

    provider_name = "alpaca"

    def __init__(
        self,
        config: ClientConfig,
        auth: httpx.Auth | None = None,
        rate_limiter: RateLimiter | None = None,
        *,
        feed: str = "iex",
        adjustment: str = "raw",
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        config = attrs.evolve(config, base_url=api_root(config.base_url))
        # The key from the config (else APCA_API_KEY_ID), the secret from the config (else
        # APCA_API_SECRET_KEY): what the SDKs do, and what an auth naming headers only needs.
        key = config.api_key or os.environ.get("APCA_API_KEY_ID") or None
        secret = config.api_secret or os.environ.get("APCA_API_SECRET_KEY") or None
        if auth is None:
            auth = HeaderTokenAuth("APCA-API-KEY-ID", "APCA-API-SECRET-KEY", key, secret)
        elif isinstance(auth, HeaderTokenAuth) and not auth.complete:
            auth = auth.filled(key, secret)
        super().__init__(
            config, auth, rate_limiter or RateLimiter(200, 60.0), transport, async_transport
        )
        self.feed = feed
        self.adjustment = adjustment

    def endpoint(self, symbol: str | Sequence[str]) -> str:
        if isinstance(symbol, str):
            return f"/v2/stocks/{quote(symbol, safe='.')}/bars"
        return "/v2/stocks/bars"

    def max_bars(
        self,
        symbol: str | Sequence[str],
        start_ts: dt.datetime | int,
        end_ts: dt.datetime | int,
        timeframe: Timeframe = Timeframe.M1,
        **options: Any,
    ) -> int:
        """Every bar of the range (one a timeframe, end included) for every symbol asked."""
        span = _nanos(end_ts) - _nanos(start_ts)
        per_symbol = span // Timeframe.parse(timeframe).nanos + 2
        return per_symbol * (1 if isinstance(symbol, str) else len(symbol))

    def build_request_params(
        self,
        symbol: str | Sequence[str],
        start_ts: dt.datetime | int,
        end_ts: dt.datetime | int,
        cursor: str | None = None,
        timeframe: Timeframe = Timeframe.M1,
        **options: Any,
    ) -> dict[str, str]:
        params = {
            "timeframe": TIMEFRAMES[Timeframe.parse(timeframe)],
            "adjustment": self.adjustment,
            **self.paging(start_ts, end_ts, cursor),
        }
        if not isinstance(symbol, str):
            params["symbols"] = ",".join(symbol)
        return params

    def paging(
        self, start_ts: dt.datetime | int, end_ts: dt.datetime | int, cursor: str | None
    ) -> dict[str, str]:
        """The parameters every paged query of this client takes: the range, a full page, the
        feed, oldest first, and the page token."""
        params = {
            "start": rfc3339(start_ts),
            "end": rfc3339(end_ts),
            "limit": str(PAGE_LIMIT),
            "feed": self.feed,
            "sort": "asc",
        }
        if cursor:
            params["page_token"] = cursor
        return params

    def parse_response(
        self, raw_json: bytes, symbols: str | Sequence[str] | None = None, **context: Any
    ) -> tuple[pa.Table, str | None]:
        """One page to (canonical bars, next page token). Every empty shape is zero bars; a
        requested symbol missing from the answer is zero bars."""
        require_json_object(raw_json, "alpaca")
        multi = symbols is not None and not isinstance(symbols, str)
        names: list[str] = list(symbols) if multi else []  # type: ignore[arg-type]
        schema = (
            pa.schema(
                [
                    ("bars", pa.struct([(s, pa.list_(_BAR)) for s in names])),
                    ("next_page_token", pa.string()),
                ]
            )
            if multi
            else _SINGLE
        )
        body = fold_lines(raw_json)
        try:
            page = read_page(body, schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            return self._parse_fallback(body, exc)
        if page.num_rows != 1:
            raise MalformedResponseError("alpaca sent an unexpected body (not one JSON object)")
        token = page["next_page_token"][0].as_py() or None
        bars = page["bars"].combine_chunks()
        parts: list[pa.Table] = []
        if multi:
            for i, name in enumerate(names):
                lists = bars.field(i)
                if lists.null_count < len(lists):
                    parts.append(_columns(name, lists.flatten()))
        else:
            name = page["symbol"][0].as_py() or (symbols if isinstance(symbols, str) else "")
            if bars.null_count < len(bars):
                parts.append(_columns(name, bars.flatten()))
        if not parts:
            return _LOOSE.empty_table(), token
        return pa.concat_tables(parts), token

    def _parse_fallback(self, body: bytes, exc: Exception) -> tuple[pa.Table, str | None]:
        """Small bodies that did not fit the schema: the empty shapes (``{"bars": []}``, ...)."""
        if len(body) <= 4096:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict) and not data.get("bars"):
                token = data.get("next_page_token")
                if token is not None and not isinstance(token, str):
                    raise MalformedResponseError("alpaca sent a next_page_token that is not text")
                return _LOOSE.empty_table(), token or None
        reason = str(exc).splitlines()[0][:120]
        raise MalformedResponseError(f"alpaca sent a body that does not decode ({reason})")

    def fetch_actions(
        self, symbols: Sequence[str], start: dt.date, end: dt.date
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Every corporate action of ``symbols`` from ``start`` to ``end`` (inclusive), page
        after page, through the same rate limiter and retries as bars: ``(rows, unknown type
        keys)``. A token that repeats, or more than ``max_pages`` pages, is a malformed answer."""
        rows: list[dict[str, Any]] = []
        unknown: list[str] = []
        for at in range(0, len(symbols), ACTION_SYMBOLS):
            chunk = symbols[at : at + ACTION_SYMBOLS]
            params = {
                "symbols": ",".join(chunk),
                "start": start.isoformat(),
                "end": end.isoformat(),
                "limit": str(ACTION_PAGE_LIMIT),
                "sort": "asc",
            }
            seen: set[str] = set()
            for _ in range(self.config.max_pages):
                page, kinds, token = self.request(ACTION_PATH, params, parse_page)
                rows += page
                unknown += kinds
                if token is None:
                    break
                if token in seen:
                    raise MalformedResponseError(
                        "alpaca returned the same corporate-actions page token twice; "
                        "stopping rather than looping"
                    )
                seen.add(token)
                params["page_token"] = token
            else:
                raise MalformedResponseError(
                    f"alpaca kept paging corporate actions past {self.config.max_pages:,} pages"
                )
        return rows, sorted(set(unknown))

    def classify_error(self, response: httpx.Response) -> ConnectorError:
        message = error_message(response)
        status = response.status_code
        if "subscription does not permit" in message.lower():
            return EntitlementError(
                f"alpaca: your subscription does not permit querying recent SIP data "
                f"(feed={self.feed}, HTTP {status}): use --feed iex, or end the range at least "
                "15 minutes ago"
            )
        if status in (401, 403):
            return AuthenticationError(
                f"alpaca rejected the credentials (HTTP {status}: {message}): {CREDENTIALS_HINT}"
            )
        if status in (400, 422):
            return InvalidRequestError(f"alpaca refused a parameter (HTTP {status}): {message}")
        if status == 404:
            return InvalidRequestError(
                f"alpaca answered 404 for {response.request.url.path}: check base_url "
                f"({self.config.base_url})"
            )
        return super().classify_error(response)
