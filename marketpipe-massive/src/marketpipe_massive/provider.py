"""``MassiveProvider``: bars, trades and quotes from Massive's daily flat files, a whole market
in one pass a day.

A unit asks for some symbols of one day; the day's file (``minute_aggs_v1`` for ``1m``,
``day_aggs_v1`` for ``1d``, ``trades_v1`` and ``quotes_v1`` for ticks, see
:mod:`marketpipe_massive.ticks`) is found in its month's listing, streamed once and shared by
every unit of that day (see :mod:`marketpipe_massive.day_stream`). ``--all-symbols`` takes a day's
tickers from its day-aggregates file, a small one, so the minute file is still read once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model import clock
from marketpipe.model.actions import actions_table
from marketpipe.model.calendar import SessionWindow, ny_midnight_ns
from marketpipe.model.errors import DataUnavailableError, InvalidInputError
from marketpipe.model.instruments import instruments_table
from marketpipe.model.request import FetchRequest
from marketpipe.model.secrets import Secret
from marketpipe.model.values import Timeframe, usable_symbols
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.settings import parse_number

from marketpipe_massive.actions import (
    dividend_rows,
    factor_disagreements,
    instrument_rows,
    rename_rows,
    renames_from_tickers,
    split_rows,
)
from marketpipe_massive.aggs import ROUNDING, AggReader
from marketpipe_massive.api import MassiveApi
from marketpipe_massive.day_stream import DayStream
from marketpipe_massive.flatfiles import FlatFiles
from marketpipe_massive.ticks import QUOTE_SIZES, TickReader

log = logging.getLogger("marketpipe.massive")

FLATFILES_URL = "https://files.massive.com"
API_URL = "https://api.massive.com"
DATASETS = {
    Timeframe.M1: ("minute_aggs_v1", "minute"),
    Timeframe.D1: ("day_aggs_v1", "day"),
    Timeframe.TRADES: ("trades_v1", "trades"),
    Timeframe.QUOTES: ("quotes_v1", "quotes"),
}
#: Tickers a corporate-actions request names (``ticker.any_of``); more symbols than this are
#: asked in bulk (every ticker's actions of the period).
ACTION_TICKERS = 200
#: Up to this many symbols, renames come from each one's ticker events (exact days); beyond,
#: from the tickers list (two paged requests for the whole market).
EVENT_SYMBOLS = 50
#: Days whose streams stay open at once: the units in flight span at most two.
OPEN_DAYS = 3
#: Symbols a unit asks for from which its day's file is read ahead of the units (a whole
#: market's units hold hundreds, and take every row); fewer are read only as far as they need.
#: Read ahead, ``--symbols T00010,T00020`` took 0.06 s more CPU a day (bench_flatfiles' files).
AHEAD_SYMBOLS = 100


class MassiveProvider(IMarketDataProvider):
    """Massive (ex-Polygon.io) US stocks, SIP feed, from the flat files."""

    feed = "sip"

    def __init__(
        self,
        api_key: Secret | str | None = None,
        s3_access_key_id: Secret | str | None = None,
        s3_secret_access_key: Secret | str | None = None,
        flatfiles_url: str = FLATFILES_URL,
        bucket: str = "flatfiles",
        base_url: str = API_URL,
        timeout: str = "60",
        quote_sizes: str = "lots",
    ) -> None:
        if quote_sizes not in QUOTE_SIZES:
            raise InvalidInputError(
                f"massive: quote_sizes is {' or '.join(QUOTE_SIZES)}, not {quote_sizes!r}"
            )
        self._quote_sizes = quote_sizes
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = parse_number("massive", "timeout", timeout)
        self._api: MassiveApi | None = None
        self._ticker_list: list[dict[str, Any]] | None = None
        self._files = FlatFiles(
            flatfiles_url,
            bucket.strip() or "flatfiles",
            s3_access_key_id,
            s3_secret_access_key,
            self._timeout,
        )
        self._lock = threading.Lock()
        self._streams: OrderedDict[tuple[str, dt.date], DayStream] = OrderedDict()
        self._notes: list[str] = []
        #: Per day file: rows handed out whose fractional volume was rounded, largest change.
        self._rounded: dict[str, tuple[int, float]] = {}

    def __repr__(self) -> str:
        return f"MassiveProvider({self._files!r})"

    # -- day files -------------------------------------------------------------------------------

    def _stream(self, timeframe: Timeframe, day: dt.date, ahead: bool = False) -> DayStream:
        """The day's stream, opened by the first unit to ask (``ahead``: read ahead of the
        units, for those that take the whole file)."""
        dataset, label = DATASETS[timeframe]
        with self._lock:
            found = self._streams.get((dataset, day))
            if found is not None:
                self._streams.move_to_end((dataset, day))
                return found
        file = self._files.day_file(dataset, day, label)
        name = f"{day} {label} file"

        def open_batches() -> Iterator[pa.RecordBatch]:
            reader: AggReader | TickReader = (
                AggReader(self._files.open(file), name, ahead)
                if timeframe.is_bar
                else TickReader(self._files.open(file), name, label, self._quote_sizes, ahead)
            )
            with self._lock:  # what the header said, known before any row
                self._notes.extend(reader.notes)
                if timeframe is Timeframe.QUOTES and self._quote_sizes == "lots":
                    self._notes.append(
                        "massive quote sizes count round lots: converted to shares (x100)"
                    )
            yield from reader

        stream = DayStream(open_batches, name, ahead)
        retired = []
        with self._lock:
            stream = self._streams.setdefault((dataset, day), stream)
            while len(self._streams) > OPEN_DAYS:
                _, old = self._streams.popitem(last=False)
                self._retire(old)
                retired.append(old)
        for old in retired:  # a unit may still be taking from it: closed once it is done
            old.close()
        return stream

    def _retire(self, stream: DayStream) -> None:
        """A day's stream is done with: its notes, the rounding counted in its rows among
        them. The caller holds the lock, and closes the stream once it has let go of it (the
        stream's reading thread may be waiting for the lock)."""
        self._notes.extend(stream.notes)
        stream.notes.clear()
        count, largest = self._rounded.pop(stream.label, (0, 0.0))
        if count:
            self._notes.append(
                f"{stream.label}: {count:,} row(s) with fractional volume rounded to whole "
                f"shares (largest change {largest:.4g})"
            )

    def _count_rounding(self, label: str, table: pa.Table) -> pa.Table:
        rounding = table.column(ROUNDING)
        changed = pc.greater(rounding, 0.0)
        count = pc.sum(changed).as_py() or 0
        if count:
            largest = pc.max(rounding).as_py() or 0.0
            with self._lock:
                before, most = self._rounded.get(label, (0, 0.0))
                self._rounded[label] = (before + count, max(most, largest))
        return table.drop_columns([ROUNDING])

    # -- the provider port -----------------------------------------------------------------------

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        if request.timeframe not in DATASETS:
            raise InvalidInputError(
                f"massive: flat files hold 1m and 1d bars, trades and quotes, not "
                f"{request.timeframe.value}"
            )
        wanted = [s.value for s in request.symbols]
        ahead = len(wanted) >= AHEAD_SYMBOLS
        for window in request.windows:
            stream = self._stream(request.timeframe, window.day, ahead)
            table = stream.take(wanted)
            if table.num_rows == 0:
                continue
            table = _in_session(table, window, request.timeframe)
            if request.timeframe.is_bar:  # rounding counted in the rows kept: the session's
                table = self._count_rounding(stream.label, table)
            yield from table.to_batches()
            if stream.passes > 1:
                log.info("%s read %d times (a unit asked again)", stream.label, stream.passes)

    def source_versions(
        self, timeframe: Timeframe, days: Sequence[dt.date], *, fresh: bool = False
    ) -> dict[dt.date, str] | None:
        """Each day file's ETag and size as its month's listing shows them (one LIST a month;
        ``fresh``: listed again)."""
        if timeframe not in DATASETS:
            return None
        dataset = DATASETS[timeframe][0]
        months: dict[tuple[int, int], dt.date] = {}
        for day in days:
            months.setdefault((day.year, day.month), day)
        out: dict[dt.date, str] = {}
        for first in months.values():
            listed = self._files.month(dataset, first, fresh=fresh)
            out.update((d, f.version) for d, f in listed.items())
        wanted = set(days)
        return {d: v for d, v in out.items() if d in wanted}

    # -- REST: corporate actions ---------------------------------------------------------------

    def _rest(self) -> MassiveApi:
        with self._lock:
            if self._api is None:
                self._api = MassiveApi(self._base_url, self._api_key, self._timeout)
            return self._api

    def fetch_actions(
        self, symbols: Sequence[str], start: dt.date, end: dt.date
    ) -> pa.Table | None:
        """Splits (forward, reverse, stock dividends), cash dividends and ticker changes of
        ``symbols`` with a date in ``start``..``end``; the splits are asked through today, so
        Massive's cumulative factors can be checked against their own product."""
        api = self._rest()
        # Up to ACTION_TICKERS symbols are named in the query; more are asked in bulk (every
        # ticker's actions of the period, a few pages) and kept for the symbols asked.
        bulk = len(symbols) > ACTION_TICKERS
        named = {} if bulk else {"ticker.any_of": ",".join(symbols)}
        splits = api.every(
            "/stocks/v1/splits",
            {**named, "execution_date.gte": start.isoformat(), "limit": "5000",
             "sort": "execution_date.asc"},
        )  # fmt: skip
        dividends = api.every(
            "/stocks/v1/dividends",
            {**named, "ex_dividend_date.gte": start.isoformat(),
             "ex_dividend_date.lte": end.isoformat(), "limit": "5000",
             "sort": "ex_dividend_date.asc"},
        )  # fmt: skip
        asked = set(symbols)
        if bulk:
            splits = [r for r in splits if r.get("ticker") in asked]
            dividends = [r for r in dividends if r.get("ticker") in asked]
        rows: list[dict[str, Any]] = dividend_rows(dividends)
        for line in factor_disagreements(splits):
            log.warning("%s", line)
        rows += [r for r in split_rows(splits) if r["ex_date"] is None or r["ex_date"] <= end]
        renames: dict[str, dict[str, Any]] = {}
        if len(symbols) <= EVENT_SYMBOLS:
            found = [r for symbol in symbols for r in rename_rows(api.ticker_events(symbol))]
        else:  # a request a symbol would not end: the tickers list tells renames in bulk
            found = renames_from_tickers(self._tickers())
        for row in found:
            mine = row["symbol"] in asked or row["new_symbol"] in asked
            if mine and start <= row["ex_date"] <= end:
                renames[row["id"]] = row
        rows += renames.values()
        fetched = clock.now()
        for row in rows:
            row["provider"] = "massive"
            row["fetched_at"] = fetched
        return actions_table(rows)

    def _tickers(self) -> list[dict[str, Any]]:
        """Every US stock ticker Massive lists, active and delisted (``/v3/reference/tickers``
        with ``active=true`` and ``active=false``), asked once a provider."""
        if self._ticker_list is None:
            api = self._rest()
            self._ticker_list = [
                row
                for active in ("true", "false")
                for row in api.every(
                    "/v3/reference/tickers",
                    {"market": "stocks", "active": active, "limit": "1000", "sort": "ticker"},
                )
            ]
        return self._ticker_list

    def fetch_instruments(self) -> pa.Table:
        """Every US stock ticker Massive lists, active and delisted, as instruments."""
        return instruments_table(instrument_rows(self._tickers(), clock.now()))

    def list_symbols(self, windows: Sequence[SessionWindow]) -> list[str]:
        """Each day's tickers from its day-aggregates file (a small one): what traded that day."""
        found: set[str] = set()
        missing = []
        for window in windows:
            try:
                table = self._stream(Timeframe.D1, window.day).take_all()
            except DataUnavailableError:
                missing.append(window.day)  # its partitions fail by name when fetched
                continue
            found.update(pc.unique(table.column(0)).to_pylist() if table.num_rows else [])
        if missing:
            with self._lock:
                self._notes.append(
                    f"--all-symbols: no day file listed for {len(missing)} session(s) "
                    f"({', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}); "
                    "their symbols are those of the other days"
                )
        usable, unusable = usable_symbols(found)
        if unusable:
            with self._lock:
                self._notes.append(
                    f"{len(unusable)} ticker(s) left out of --all-symbols, not valid MarketPipe "
                    f"symbols as written: {', '.join(unusable[:10])}"
                )
        return usable

    def take_notes(self) -> list[str]:
        with self._lock:
            for stream in self._streams.values():
                self._notes.extend(stream.notes)
                stream.notes.clear()
            notes, self._notes = list(dict.fromkeys(self._notes)), []
        return notes

    def close(self) -> None:
        """Retire every day still open: their totals become notes (the job takes them last)."""
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None
            retired = list(self._streams.values())
            self._streams.clear()
            for stream in retired:
                self._retire(stream)
        for stream in retired:
            stream.close()

    async def aclose(self) -> None:
        self.close()


def _in_session(table: pa.Table, window: SessionWindow, timeframe: Timeframe) -> pa.Table:
    """The rows of the session asked. A minute file holds both extended sessions; a row of the
    file's day outside the session asked is left out, a row outside the day is kept for the
    validators to quarantine with a reason. Ticks likewise."""
    if timeframe is Timeframe.D1:
        return table
    stamps = table.column(1).cast(pa.int64()).to_numpy(zero_copy_only=False)
    inside_day = (stamps >= window.midnight_ns) & (
        stamps < ny_midnight_ns(window.day + dt.timedelta(days=1))
    )
    in_session = (stamps >= window.start_ns) & (stamps < window.end_ns)
    keep = in_session | ~inside_day
    if keep.all():
        return table
    return table.filter(pa.array(keep))
