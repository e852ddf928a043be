"""``IexHistProvider``: bars, trades and quotes from IEX HIST captures, downloaded (and
cached) or local.

Per day, the capture is found (the HIST index, or the ``--source`` files by their content),
downloaded into the cache if needed, and decoded in one pass into every symbol's minute bars,
which are kept (see :mod:`marketpipe_iex.day_cache`); each request then takes its symbols,
session and timeframe from those. A request for trades or quotes decodes the day once more if
only its bars were kept, and keeps its ticks too (:mod:`marketpipe_iex.tick_cache`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
from marketpipe.fetch import ClientConfig, progress
from marketpipe.fetch.download import download_file
from marketpipe.model.calendar import SessionWindow, nyse_calendar
from marketpipe.model.errors import DataUnavailableError, InvalidInputError
from marketpipe.model.files import file_lock
from marketpipe.model.request import FetchRequest
from marketpipe.model.values import Session, Timeframe, TimeRange, usable_symbols
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.settings import parse_number

from marketpipe_iex import day_cache, tick_cache
from marketpipe_iex.bars import BarBuilder, MinuteBars
from marketpipe_iex.decode import CaptureDecoder
from marketpipe_iex.hist.cache import default_cache_dir
from marketpipe_iex.hist.index import FEEDS, PRODUCTION_URL, HistFile, HistIndexClient, pick
from marketpipe_iex.sources import LocalCapture, scan

log = logging.getLogger("marketpipe.iex")


@attrs.frozen
class _Capture:
    path: Path
    label: str
    layout: int | None  # None: from the capture's first trade report


class IexHistProvider(IMarketDataProvider):
    """IEX HIST captures to bars. ``source`` (a path, folder or glob) reads local captures and
    never touches the network; otherwise the HIST index at ``base_url`` names each day's file."""

    def __init__(
        self,
        feed: str | None = None,
        version: str | None = None,
        source: str | None = None,
        cache_dir: str | None = None,
        base_url: str = PRODUCTION_URL,
        timeout: str = "60",
    ) -> None:
        wanted = feed.strip().upper() if feed else None
        if wanted == "DEEP+":
            wanted = "DPLS"
        if wanted is not None and wanted not in FEEDS:
            raise InvalidInputError(f"iex: unknown feed {feed!r}; use tops, deep or dpls")
        self._version = version.strip() if version else None
        self._cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._local: dict[dt.date, LocalCapture] | None = None
        if source:
            captures = scan(source)
            feeds = sorted({c.feed for c in captures})
            if wanted is None and len(feeds) > 1:
                raise InvalidInputError(
                    f"iex: --source holds {' and '.join(feeds)} captures; choose one with --feed"
                )
            wanted = wanted or feeds[0]
            self._local = {c.day: c for c in captures if c.feed == wanted}
            if not self._local:
                raise InvalidInputError(
                    f"iex: --source holds no {wanted} capture (found {', '.join(feeds)})"
                )
        self._feed = wanted or "TOPS"
        self.feed = self._feed.lower()
        seconds = parse_number("iex", "timeout", timeout)
        self._index = (
            None
            if self._local is not None
            else HistIndexClient(ClientConfig(base_url=base_url, timeout=seconds))
        )
        self._index_files: dict[dt.date, list[HistFile]] = {}
        self._lock = threading.Lock()
        self._day_locks: dict[dt.date, threading.Lock] = {}
        self._recent: dict[dt.date, MinuteBars] = {}
        self._tick_days: dict[dt.date, tuple[Path, Path]] = {}
        self._unmatched = 0
        self._ticks_expected = False
        self._notes: list[str] = []

    def __repr__(self) -> str:
        where = "local captures" if self._local is not None else f"HIST index, cache {self._cache}"
        return f"IexHistProvider(feed={self._feed!r}, {where})"

    # -- days and captures ----------------------------------------------------------------------

    def available_days(self) -> list[dt.date] | None:
        return None if self._local is None else sorted(self._local)

    def _capture(self, day: dt.date) -> _Capture:
        if self._local is not None:
            local = self._local.get(day)
            if local is None:
                raise DataUnavailableError(
                    f"no {self._feed} capture of {day} among the --source files"
                )
            return _Capture(local.path, local.label, None)
        assert self._index is not None
        if day not in self._index_files:
            self._index_files[day] = self._index.files(day)
        hist = pick(self._index_files[day], day, self._feed, self._version)
        if hist is None:
            listed = sorted({f"{f.feed} {f.version}" for f in self._index_files[day]})
            raise DataUnavailableError(
                f"IEX HIST has no {self._feed}{' ' + self._version if self._version else ''} file "
                f"for {day}"
                + (f" (it lists {', '.join(listed)})" if listed else " (files appear the next day)")
            )
        # Named from the entry's checked parts (day, protocol, feed, version), never from the
        # link: for IEX's links the two agree (20240304_IEXTP1_TOPS1.6.pcap.gz).
        target = self._cache / "hist" / hist.file_name
        if not (target.exists() and target.stat().st_size == hist.size):
            task = progress.task(f"download {hist.label}", hist.size)
            try:
                with file_lock(target.with_name(target.name + ".lock")):
                    download_file(
                        self._index,
                        hist.link,
                        target,
                        hist.size,
                        lambda done, total: task.update(done, total),
                    )
            finally:
                task.close()
        return _Capture(target, hist.label, hist.trade_layout)

    # -- decoding -------------------------------------------------------------------------------

    def day_bars(self, day: dt.date) -> MinuteBars:
        """Every symbol's minute bars of ``day``: from memory, the decoded-day cache, or one pass
        over the capture."""
        with self._lock:
            if day in self._recent:
                return self._recent[day]
        return self._decoded(day, ticks=False)

    def day_ticks(self, day: dt.date) -> tuple[Path, Path]:
        """The files of ``day``'s trades and quotes, decoded (with its bars, in the same pass)
        if the cache has none yet."""
        with self._lock:
            files = self._tick_days.get(day)
        if files is None:
            self._decoded(day, ticks=True)
            with self._lock:
                files = self._tick_days[day]
        return files

    def _decoded(self, day: dt.date, ticks: bool) -> MinuteBars:
        with self._lock:
            day_lock = self._day_locks.setdefault(day, threading.Lock())
        with day_lock:
            with self._lock:
                if day in self._recent and (not ticks or day in self._tick_days):
                    return self._recent[day]
            capture = self._capture(day)
            cached = day_cache.cache_file(self._cache / "bars", capture.path)
            tick_paths = tick_cache.tick_files(cached)
            with file_lock(cached.with_name(cached.name + ".lock")):
                loaded = day_cache.load(cached)
                if loaded is None or (ticks and not tick_paths[0].exists()):
                    bars, notes = self._decode(capture, day, tick_paths if ticks else None)
                    day_cache.save(cached, bars, notes)
                else:
                    bars, notes = loaded
                if tick_paths[0].exists():
                    with self._lock:
                        self._tick_days[day] = tick_paths
            with self._lock:
                for note in notes:
                    self._notes.append(f"{capture.label}: {note}")
                while len(self._recent) >= 2:
                    self._recent.pop(next(iter(self._recent)))
                self._recent[day] = bars
            return bars

    def _decode(
        self, capture: _Capture, day: dt.date, ticks: tuple[Path, Path] | None = None
    ) -> tuple[MinuteBars, list[str]]:
        """One pass over the capture: every symbol's minute bars, and with ``ticks`` (the two
        files' paths) every trade and quote written there as the pass goes."""
        size = capture.path.stat().st_size
        task = progress.task(f"decode {capture.label}", size)
        writer = tick_cache.TickWriter(*ticks) if ticks is not None else None
        try:
            decoder = CaptureDecoder(capture.path, layout=capture.layout, on_progress=task.update)
            # no regular session (a weekend test day): extended-hours trades set prices
            builder = BarBuilder(nyse_calendar().windows(TimeRange(day, day), Session.REGULAR))
            if writer is None:
                for batch in decoder.trades():
                    builder.add(batch)
            else:
                for batch, quotes in decoder.trades_and_quotes():
                    builder.add(batch)
                    writer.add(batch, quotes)
            bars = builder.finish()
            if writer is not None:
                writer.finish()
        except BaseException:
            if writer is not None:
                writer.abandon()
            raise
        finally:
            task.close()
        stats = decoder.stats
        if stats.day is not None and stats.day != day:
            raise DataUnavailableError(f"{capture.label} holds {stats.day}, not {day}")
        log.info(
            "decoded %s: %s messages, %s trades, %s breaks, %s bars",
            capture.label,
            f"{stats.messages:,}",
            f"{stats.trades:,}",
            stats.breaks,
            len(bars),
        )
        notes = stats.problems()
        if writer is not None and writer.zero_quotes:
            notes.append(
                f"{writer.zero_quotes:,} zero quote(s) (sent before a symbol trades, no bid and "
                "no offer) are not quotes: left out"
            )
        return bars, notes

    # -- the provider port ----------------------------------------------------------------------

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        wanted = [s.value for s in request.symbols]
        kind = request.timeframe
        if kind is Timeframe.QUOTES and self._feed != "TOPS":
            raise InvalidInputError(
                f"iex: {self._feed} captures carry price levels, not quote updates: quotes come "
                "from TOPS captures (--feed tops)"
            )
        for window in request.windows:
            if kind.is_bar:
                table = self.day_bars(window.day).select(wanted).to_table(kind, [window])
            elif kind is Timeframe.TRADES:
                found = tick_cache.read_trades(
                    self.day_ticks(window.day)[0], wanted, window.start_ns, window.end_ns
                )
                table = found.table
                if found.unmatched:
                    with self._lock:
                        self._unmatched += found.unmatched
            else:
                path = self.day_ticks(window.day)[1]
                table = tick_cache.read_quotes(path, wanted, window.start_ns, window.end_ns)
            yield from table.to_batches()

    def expect(self, timeframe: Timeframe) -> None:
        """A tick job: the days its symbols are listed from are decoded with their ticks, so
        the fetches that follow read them from the cache, not from a second pass."""
        self._ticks_expected = not timeframe.is_bar

    def list_symbols(self, windows: Sequence[SessionWindow]) -> list[str]:
        found: set[str] = set()
        for window in windows:
            try:
                if self._ticks_expected:
                    self.day_ticks(window.day)
                bars = self.day_bars(window.day)
            except DataUnavailableError as exc:
                raise InvalidInputError(
                    f"iex: cannot list the symbols of {window.day}: {exc}"
                ) from None
            inside = (bars.minute >= window.start_ns) & (bars.minute < window.end_ns)
            found.update(np.unique(bars.symbol[inside]).tolist())
        usable, unusable = usable_symbols(found)
        if unusable:
            with self._lock:
                self._notes.append(
                    f"{len(unusable)} symbol(s) left out of --all-symbols, not valid MarketPipe "
                    f"symbols: {', '.join(unusable[:10])}"
                )
        return usable

    def take_notes(self) -> list[str]:
        with self._lock:
            notes, self._notes = self._notes, []
        return notes

    async def aclose(self) -> None:
        """The job's totals, said once: breaks that named no trade."""
        with self._lock:
            if self._unmatched:
                self._notes.append(
                    f"{self._unmatched:,} trade break(s) named no earlier trade of their symbol "
                    "and id among those stored: no trade canceled for them"
                )
                self._unmatched = 0

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
