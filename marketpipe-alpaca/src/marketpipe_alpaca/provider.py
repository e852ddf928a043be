"""``AlpacaMarketDataAdapter``: the Alpaca provider MarketPipe's pipeline drives."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
from marketpipe.fetch import ClientConfig, RateLimiter
from marketpipe.model import clock
from marketpipe.model.actions import actions_table
from marketpipe.model.calendar import SessionWindow, in_sessions
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.instruments import instruments_table
from marketpipe.model.request import FetchRequest
from marketpipe.model.secrets import Secret
from marketpipe.model.values import Session, Timeframe
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.settings import parse_number

from marketpipe_alpaca.assets import TRADING_URL, TradingClient, asset_row, parse_assets
from marketpipe_alpaca.client import PAGE_LIMIT, PRODUCTION_URL, AlpacaClient
from marketpipe_alpaca.ticks import QUOTE_SIZES, AlpacaTickClient

log = logging.getLogger("marketpipe.alpaca")

FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats", "overnight")
ADJUSTMENTS = ("raw", "split", "dividend", "spin-off", "all")
_SECOND = 1_000_000_000


class AlpacaMarketDataAdapter(IMarketDataProvider):
    """Alpaca bars, trades and quotes for the pipeline (columnar), and the seed's per-bar
    ``fetch_bars_for_symbol``.

    A unit of several symbols is one multi-symbol query: its pages pack bars of many symbols, so
    it never takes more requests than one query per symbol would. The query spans the unit's first
    session start to its last session end; bars the API returns outside the requested sessions
    (extended hours when the session is regular, nights) are dropped here, by definition of the
    session asked for.
    """

    def __init__(
        self,
        api_key_id: Secret | str,
        api_secret_key: Secret | str,
        base_url: str = PRODUCTION_URL,
        feed: str = "iex",
        adjustment: str = "raw",
        rate_limit: str = "200",
        rate_limit_window: str = "60",
        timeout: str = "30",
        trading_url: str = TRADING_URL,
        quote_sizes: str = "shares",
    ) -> None:
        if feed not in FEEDS:
            raise InvalidInputError(f"alpaca: unknown feed {feed!r}; use one of {', '.join(FEEDS)}")
        parts = [p.strip() for p in adjustment.split(",")]
        if not all(p in ADJUSTMENTS for p in parts):
            raise InvalidInputError(
                f"alpaca: unknown adjustment {adjustment!r}; use {', '.join(ADJUSTMENTS)} "
                "(comma-combinable)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInputError("alpaca: base_url must start with http:// or https://")
        if quote_sizes not in QUOTE_SIZES:
            raise InvalidInputError(
                f"alpaca: quote_sizes is {' or '.join(QUOTE_SIZES)}, not {quote_sizes!r}"
            )
        self.quote_sizes = quote_sizes
        self._ticks: dict[Timeframe, AlpacaTickClient] = {}
        self._notes: list[str] = []
        self.feed = feed
        limit = int(parse_number("alpaca", "rate_limit", rate_limit, integer=True))
        self.client = AlpacaClient(
            ClientConfig(
                base_url=base_url.rstrip("/"),
                api_key=api_key_id,
                api_secret=api_secret_key,
                timeout=parse_number("alpaca", "timeout", timeout),
            ),
            rate_limiter=RateLimiter(
                limit, parse_number("alpaca", "rate_limit_window", rate_limit_window)
            ),
            feed=feed,
            adjustment=",".join(parts),
        )
        if not trading_url.startswith(("http://", "https://")):
            raise InvalidInputError("alpaca: trading_url must start with http:// or https://")
        self.trading = TradingClient(
            ClientConfig(base_url=trading_url.rstrip("/"), timeout=self.client.config.timeout),
            auth=self.client.auth,
            rate_limiter=self.client.rate_limiter,
        )

    def __repr__(self) -> str:
        return f"AlpacaMarketDataAdapter(feed={self.feed!r}, client={self.client!r})"

    @staticmethod
    def _bounds(windows: Sequence[SessionWindow], timeframe: Timeframe) -> tuple[int, int]:
        """First session start, floored to the timeframe in New York time (a daily bar is stamped
        at midnight, an hourly one on the hour), to the last session end (``end`` is inclusive)."""
        tf = timeframe.nanos
        first = min(windows, key=lambda w: w.start_ns)
        start = first.midnight_ns + (first.start_ns - first.midnight_ns) // tf * tf
        return start, max(w.end_ns for w in windows) - _SECOND

    def _tick_client(self, kind: Timeframe) -> AlpacaTickClient:
        """The client of trades or quotes: the bars client's keys, limiter and limits."""
        if kind not in self._ticks:
            self._ticks[kind] = AlpacaTickClient(
                self.client.config,
                auth=self.client.auth,
                rate_limiter=self.client.rate_limiter,
                feed=self.feed,
                kind=kind,
                quote_sizes=self.quote_sizes,
            )
            if kind is Timeframe.QUOTES and self.quote_sizes == "lots":
                self._notes.append(
                    "alpaca quote sizes were sent in round lots: converted to shares (x100)"
                )
        return self._ticks[kind]

    def _spans(self, request: FetchRequest) -> list[tuple[int, int]]:
        """The queries for a unit: one over all its days, or one per day when that takes fewer
        requests. One span also returns the nights and extended hours in between (dropped for a
        regular session); with many symbols, per-day queries skip them and page less."""
        if not request.timeframe.is_bar:
            if request.session is Session.EXTENDED:  # nights hold no trade: one query, full pages
                return [
                    (
                        min(w.start_ns for w in request.windows),
                        max(w.end_ns for w in request.windows),
                    )
                ]
            return [(w.start_ns, w.end_ns) for w in request.windows]  # no extended hours
        one = self._bounds(request.windows, request.timeframe)
        if request.session is Session.EXTENDED or request.timeframe is Timeframe.D1:
            return [one]
        symbols = len(request.symbols)
        per_bar = request.timeframe.minutes
        span_pages = -(-symbols * len(request.windows) * (16 * 60 // per_bar) // PAGE_LIMIT)
        day_pages = sum(
            -(-symbols * max(1, w.minutes // per_bar) // PAGE_LIMIT) for w in request.windows
        )
        if day_pages >= span_pages:
            return [one]
        return [self._bounds([w], request.timeframe) for w in request.windows]

    def _query(self, request: FetchRequest) -> str | list[str]:
        symbols = [s.value for s in request.symbols]
        return symbols[0] if len(symbols) == 1 else symbols

    def _keep_sessions(self, table: pa.Table, request: FetchRequest) -> pa.Table:
        if table.num_rows == 0:
            return table
        ts = np.asarray(table["timestamp"].cast(pa.int64()).fill_null(-1).to_numpy())
        length = request.timeframe.nanos if request.timeframe.is_bar else 1  # a tick: a point
        keep = in_sessions(ts, request.windows, length)
        dropped = int((~keep).sum())
        if dropped:
            log.debug("alpaca: %d rows outside the requested sessions left out", dropped)
            return table.filter(pa.array(keep))
        return table

    def _client_of(self, request: FetchRequest) -> AlpacaClient:
        kind = request.timeframe
        return self.client if kind.is_bar else self._tick_client(kind)

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        if not request.windows:
            return
        client = self._client_of(request)
        for start, end in self._spans(request):
            table = client.fetch_batch(
                self._query(request), start, end, timeframe=request.timeframe
            )
            yield from self._keep_sessions(table, request).to_batches()

    async def fetch_async(self, request: FetchRequest) -> list[pa.RecordBatch]:
        if not request.windows:
            return []
        client = self._client_of(request)
        batches: list[pa.RecordBatch] = []
        for start, end in self._spans(request):
            table = await client.async_fetch_batch(
                self._query(request), start, end, timeframe=request.timeframe
            )
            batches.extend(self._keep_sessions(table, request).to_batches())
        return batches

    def fetch_instruments(self) -> pa.Table:
        """The trading API's US equity assets, active and inactive (``GET /v2/assets``), under
        the same keys, limiter and retries as bars. Alpaca gives no listing days."""
        fetched = clock.now()
        rows = []
        for status in ("active", "inactive"):
            assets = self.trading.request(
                "/v2/assets", {"status": status, "asset_class": "us_equity"}, parse_assets
            )
            rows += [asset_row(a, fetched) for a in assets]
        return instruments_table(rows)

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pa.Table:
        """Alpaca's corporate actions of ``symbols``, every type (an unknown one kept as kind
        ``unknown`` and logged), in the canonical schema."""
        rows, unknown = self.client.fetch_actions(list(symbols), start, end)
        if unknown:
            log.warning(
                "alpaca: corporate-action types MarketPipe does not know, kept as 'unknown' "
                "and never applied: %s",
                ", ".join(unknown),
            )
        fetched = clock.now()
        for row in rows:
            row["provider"] = "alpaca"
            row["fetched_at"] = fetched
        return actions_table(rows)

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes

    def close(self) -> None:
        self.client.close()
        for ticks in self._ticks.values():
            ticks.close()
        self.trading.close()

    async def aclose(self) -> None:
        await self.client.aclose()
        for ticks in self._ticks.values():
            await ticks.aclose()
        self.trading.close()
