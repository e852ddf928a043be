"""``IexHistProvider``: bars from IEX HIST captures, downloaded (and cached) or local.

Per day, the capture is found (the HIST index, or the ``--source`` files by their content),
downloaded into the cache if needed, and decoded in one pass into every symbol's minute bars,
which are kept (see :mod:`marketpipe_iex.day_cache`); each request then takes its symbols,
session and timeframe from those.
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
from marketpipe.model.values import Session, TimeRange, usable_symbols
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.settings import parse_number

from marketpipe_iex import day_cache
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
            day_lock = self._day_locks.setdefault(day, threading.Lock())
        with day_lock:
            with self._lock:
                if day in self._recent:
                    return self._recent[day]
            capture = self._capture(day)
            cached = day_cache.cache_file(self._cache / "bars", capture.path)
            with file_lock(cached.with_name(cached.name + ".lock")):
                loaded = day_cache.load(cached)
                if loaded is None:
                    bars, notes = self._decode(capture, day)
                    day_cache.save(cached, bars, notes)
                else:
                    bars, notes = loaded
            with self._lock:
                for note in notes:
                    self._notes.append(f"{capture.label}: {note}")
                while len(self._recent) >= 2:
                    self._recent.pop(next(iter(self._recent)))
                self._recent[day] = bars
            return bars

    def _decode(self, capture: _Capture, day: dt.date) -> tuple[MinuteBars, list[str]]:
        size = capture.path.stat().st_size
        task = progress.task(f"decode {capture.label}", size)
        try:
            decoder = CaptureDecoder(capture.path, layout=capture.layout, on_progress=task.update)
            # no regular session (a weekend test day): extended-hours trades set prices
            builder = BarBuilder(nyse_calendar().windows(TimeRange(day, day), Session.REGULAR))
            for batch in decoder.trades():
                builder.add(batch)
            bars = builder.finish()
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
        return bars, stats.problems()

    # -- the provider port ----------------------------------------------------------------------

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        wanted = [s.value for s in request.symbols]
        for window in request.windows:
            table = self.day_bars(window.day).select(wanted).to_table(request.timeframe, [window])
            yield from table.to_batches()

    def list_symbols(self, windows: Sequence[SessionWindow]) -> list[str]:
        found: set[str] = set()
        for window in windows:
            try:
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

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
