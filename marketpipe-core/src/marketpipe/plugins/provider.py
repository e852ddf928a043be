"""``IMarketDataProvider``: the provider port, and the plugin boundary every provider implements."""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence

import pyarrow as pa

from marketpipe.model.bars import OHLCVBar
from marketpipe.model.calendar import SessionWindow
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.request import FetchRequest
from marketpipe.model.values import Session, Symbol, Timeframe, TimeRange, usable_symbols


class IMarketDataProvider(abc.ABC):
    """A source of bars. Implement ``fetch``; everything else has a default.

    ``fetch`` receives the whole unit of work and yields record batches in the canonical schema
    (``marketpipe.model.schema.BAR_SCHEMA``). No per-bar Python objects: build columns directly.
    """

    #: Feed name used in the dataset layout (``feed=...``) so feeds never mix.
    feed: str = "default"

    @abc.abstractmethod
    def fetch(self, request: FetchRequest) -> Iterable[pa.RecordBatch]:
        """Yield the bars of ``request`` as canonical record batches."""

    async def fetch_async(self, request: FetchRequest) -> list[pa.RecordBatch]:
        """Async entry point used by the coordinator; runs ``fetch`` in a worker thread.

        Providers with a native async client override this.
        """
        return await asyncio.to_thread(lambda: list(self.fetch(request)))

    def take_notes(self) -> list[str]:
        """Notes about the source gathered since the last call (a truncated file, a sequence
        gap), shown in the job's summary and event log. The default has none."""
        return []

    def expect(self, timeframe: Timeframe) -> None:  # noqa: B027 - optional hook
        """What the job will fetch (bars of a length, or ticks), said once before it lists its
        symbols: a provider that reads the same source for every kind (a capture) can prepare
        each kind in one pass. The default does nothing."""

    def list_symbols(self, windows: Sequence[SessionWindow]) -> list[str]:
        """Every symbol the provider has data for on these days (``mp ingest --all-symbols``).

        The default takes the provider's instruments (:meth:`fetch_instruments`) listed on any
        of the days, under their names now: those whose listed days (where known) meet the
        range, active ones and delisted ones whose last day is known."""
        import pyarrow.compute as pc

        table = self.fetch_instruments()
        if table is None:
            raise InvalidInputError(
                f"this provider ({type(self).__name__}) cannot list its symbols; use --symbols"
            )
        first = pa.scalar(min(w.day for w in windows), pa.date32())
        last = pa.scalar(max(w.day for w in windows), pa.date32())
        listed = pc.and_(
            pc.fill_null(pc.less_equal(table["first_day"], last), True),
            pc.if_else(
                pc.is_null(table["last_day"]),
                table["active"],
                pc.greater_equal(table["last_day"], first),
            ),
        )
        names = pc.unique(table.filter(pc.fill_null(listed, False))["symbol"]).to_pylist()
        return usable_symbols(names)[0]  # as written: a lower-case class suffix is left out

    def available_days(self) -> list[dt.date] | None:
        """The days the provider's data covers when it knows them without asking (local files
        given with ``--source``), so ``--start`` and ``--end`` may be left out; else ``None``."""
        return None

    def source_versions(
        self, timeframe: Timeframe, days: Sequence[dt.date], *, fresh: bool = False
    ) -> dict[dt.date, str] | None:
        """The version of each day's source as the provider would read it now (a file's ETag and
        size), for a source that can be replaced after publication; a day it does not list is
        left out. The dataset keeps the version each partition was built from, and ``mp update``
        fetches again, whole, each stored day whose version changed. ``fresh`` asks the source
        again rather than what this provider already learned. ``None`` (the default): the
        provider's sources carry no version."""
        return None

    def fetch_instruments(self) -> pa.Table | None:
        """Every instrument the provider lists, active and delisted, in
        :data:`marketpipe.model.instruments.INSTRUMENT_SCHEMA` (``mp symbols --fetch``; the
        dataset keeps them versioned and answers ``marketpipe.universe``). ``None`` (the
        default): the provider has no list of instruments."""
        return None

    def fetch_actions(
        self, symbols: Sequence[str], start: dt.date, end: dt.date
    ) -> pa.Table | None:
        """The corporate actions of ``symbols`` (as the old or the new name of a rename) with an
        ex-date (or, for kinds without one, an effective date) in ``start``..``end``, in
        :data:`marketpipe.model.actions.ACTION_SCHEMA`; a kind the provider does not know is
        kept with kind ``unknown``. ``None`` (the default): the provider reports no actions,
        and its raw bars are adjusted with what the dataset's ledger holds."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections; called once the job is done with the provider."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release async connections, inside the event loop that used them."""

    async def fetch_bars_for_symbol(
        self,
        symbol: Symbol | str,
        time_range: TimeRange,
        max_bars: int | None = 1000,
        timeframe: Timeframe = Timeframe.M1,
        session: Session = Session.REGULAR,
    ) -> list[OHLCVBar]:
        """The seed's per-bar API, as the design writes it: ``await`` one symbol's bars as
        objects, at most ``max_bars`` of them (1,000 by default; ``None`` for all)."""
        return await asyncio.to_thread(
            self.fetch_bars_for_symbol_sync, symbol, time_range, max_bars, timeframe, session
        )

    def fetch_bars_for_symbol_sync(
        self,
        symbol: Symbol | str,
        time_range: TimeRange,
        max_bars: int | None = 1000,
        timeframe: Timeframe = Timeframe.M1,
        session: Session = Session.REGULAR,
    ) -> list[OHLCVBar]:
        """The synchronous twin of :meth:`fetch_bars_for_symbol`."""
        from marketpipe.model.calendar import nyse_calendar

        calendar = nyse_calendar()
        request = FetchRequest(
            symbols=(Symbol(symbol),),
            windows=tuple(calendar.windows(time_range, session)),
            timeframe=timeframe,
            session=session,
        )
        bars: list[OHLCVBar] = []
        for batch in self.fetch(request):
            bars.extend(OHLCVBar.from_table(batch))
            if max_bars is not None and len(bars) >= max_bars:
                return bars[:max_bars]
        return bars
