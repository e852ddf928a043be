"""``BaseApiClient``: a paginated HTTP API on top of :class:`~marketpipe.fetch.client.HttpClient`
(its retries, rate limiter and bounds), following the pages within ``max_pages`` and the
bars a requested range can hold."""

from __future__ import annotations

import abc
from typing import Any

import pyarrow as pa

from marketpipe.fetch.client import HttpClient
from marketpipe.fetch.errors import MalformedResponseError


class BaseApiClient(HttpClient, abc.ABC):
    """A paginated HTTP API. Subclasses implement ``endpoint``, ``build_request_params`` and
    ``parse_response``; ``fetch_batch`` and ``async_fetch_batch`` follow the pages."""

    # -- what subclasses provide --------------------------------------------------------------

    @abc.abstractmethod
    def endpoint(self, symbol: Any) -> str:
        """Path of the request for ``symbol`` (or several)."""

    @abc.abstractmethod
    def build_request_params(
        self, symbol: Any, start_ts: Any, end_ts: Any, cursor: str | None, **options: Any
    ) -> dict[str, str]:
        """Query parameters of one page."""

    @abc.abstractmethod
    def parse_response(self, raw_json: bytes, **context: Any) -> tuple[pa.Table, str | None]:
        """Decode one page: its bars (canonical table) and the next page's cursor, or ``None``."""

    def empty_rows(self) -> pa.Table:
        """What a request with no rows returns: no bars (a client of ticks: no ticks)."""
        from marketpipe.model.schema import BAR_SCHEMA

        return BAR_SCHEMA.empty_table()

    def max_bars(self, symbol: Any, start_ts: Any, end_ts: Any, **options: Any) -> int | None:
        """The most bars the request can hold (every bar of the range, every symbol), if the
        subclass can tell: a chain of pages bringing more is malformed."""
        return None

    def fetch_batch(self, symbol: Any, start_ts: Any, end_ts: Any, **options: Any) -> pa.Table:
        """Every page for ``symbol`` (or several) from ``start_ts`` to ``end_ts``, as one table.

        ``options`` reach ``build_request_params`` (a timeframe, say)."""
        pager = _Pager(self, symbol, start_ts, end_ts, options)
        while not pager.done:
            pager.add(self.request(self.endpoint(symbol), pager.params(), pager.decode))
        return pager.table()

    async def async_fetch_batch(
        self, symbol: Any, start_ts: Any, end_ts: Any, **options: Any
    ) -> pa.Table:
        """The async twin of :meth:`fetch_batch`."""
        pager = _Pager(self, symbol, start_ts, end_ts, options)
        while not pager.done:
            page = await self.async_request(self.endpoint(symbol), pager.params(), pager.decode)
            pager.add(page)
        return pager.table()


class _Pager:
    """Follows cursors until the last page. A cursor that repeats, more bars than the request
    can hold (``BaseApiClient.max_bars``), more than ``ClientConfig.max_pages`` pages, or empty
    pages that keep pointing to another one are a malformed answer: the chain ends instead of
    looping."""

    EMPTY_PAGES_IN_A_ROW = 2

    def __init__(
        self,
        client: BaseApiClient,
        symbol: Any,
        start_ts: Any,
        end_ts: Any,
        options: dict[str, Any],
    ) -> None:
        self.client, self.symbol, self.start_ts, self.end_ts = client, symbol, start_ts, end_ts
        self.options = options
        self.cursor: str | None = None
        self.seen: set[str] = set()
        self.tables: list[pa.Table] = []
        self.done = False
        self.pages = 0
        self.rows = 0
        self.empty_in_a_row = 0
        self.max_pages = client.config.max_pages
        self.max_rows = client.max_bars(symbol, start_ts, end_ts, **options)

    def params(self) -> dict[str, str]:
        return self.client.build_request_params(
            self.symbol, self.start_ts, self.end_ts, self.cursor, **self.options
        )

    def decode(self, raw: bytes) -> tuple[pa.Table, str | None]:
        return self.client.parse_response(raw, symbols=self.symbol)

    def _malformed(self, why: str) -> MalformedResponseError:
        return MalformedResponseError(
            f"{self.client.provider_name} {why}; stopping rather than looping"
        )

    def add(self, page: tuple[pa.Table, str | None]) -> None:
        table, cursor = page
        self.pages += 1
        if table.num_rows:
            self.tables.append(table)
            self.empty_in_a_row = 0
        elif cursor:
            self.empty_in_a_row += 1
            if self.empty_in_a_row > self.EMPTY_PAGES_IN_A_ROW:
                raise self._malformed(
                    f"sent {self.empty_in_a_row} empty pages in a row, each pointing to another"
                )
        if cursor and cursor in self.seen:
            raise self._malformed("returned the same page cursor twice")
        self.rows += table.num_rows
        if self.max_rows is not None and self.rows > self.max_rows:
            raise self._malformed(
                f"sent more bars ({self.rows:,} by page {self.pages:,}) than the request can "
                f"hold ({self.max_rows:,})"
            )
        if cursor and self.pages >= self.max_pages:
            raise self._malformed(f"kept paging past {self.max_pages:,} pages (max_pages)")
        if cursor:
            self.seen.add(cursor)
        self.cursor = cursor
        self.done = not cursor

    def table(self) -> pa.Table:
        # Empty pages are left out above: whatever schema an empty shape decoded to, it never
        # meets a full page's.
        return pa.concat_tables(self.tables) if self.tables else self.client.empty_rows()
