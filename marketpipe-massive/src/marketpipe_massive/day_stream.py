"""One day's file read once for every unit that asks for some of its symbols.

A whole-market job asks for a day's symbols in many units (a few hundred symbols each, so that a
unit's rows stay small), in ticker order, a few at a time. The file is sorted by ticker, so one
stream serves them all: a unit reads forward until the stream has passed its last symbol, takes
its rows and leaves the rows read beyond them for the next units. What is kept between units is
bounded (:data:`HELD_ROWS`); rows of symbols no unit asked for are let go as the stream moves on.
A unit asking for rows the stream has already let go (a retry) opens the file again.

For units that take the whole file (``ahead``: a whole market's), a pass runs on a thread of its
own, up to :data:`AHEAD` batches ahead of them (:func:`marketpipe.model.read_ahead.read_ahead`;
the file is inflated on another and parsed on Arrow's threads, :mod:`marketpipe_massive.day_csv`):
units no longer take turns reading it while the other core waits. :meth:`DayStream.close` stops
it. A few symbols' pass reads on the asking unit's thread, only as far as they need.

Which rows a unit gets relies on the file's order (Massive writes it sorted by ticker), and the
order is checked as it is read. A file found out of order is from then on read to its end before
a unit is answered (memory then grows with the file; a note says so); if rows arrive for a
ticker already handed out (its partition may be stored incomplete), the unit that read them
fails naming those tickers and the command that fetches the day again, never silently.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.errors import DataUnavailableError
from marketpipe.model.read_ahead import read_ahead

#: Rows kept for units still to come before the oldest are let go.
HELD_ROWS = 500_000
#: Batches (a CSV block each, about 15,000 minute bars) read ahead of the units taking them.
AHEAD = 8


class DayStream:
    """``open_batches()`` starts a pass over the file: canonical batches in file order."""

    def __init__(
        self,
        open_batches: Callable[[], Iterator[pa.RecordBatch]],
        label: str,
        ahead: bool = True,
    ) -> None:
        self._open = open_batches
        self.label = label
        self._ahead = AHEAD if ahead else 0
        self.passes = 0
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._last: str | None = None  # the greatest ticker read so far
        self._done = False
        self._sorted = True
        self._gone: set[str] = set()  # tickers whose rows were handed out or let go
        self._answered: set[str] = set()  # tickers handed out (rows or none) since the start
        self._late: set[str] = set()  # answered tickers whose rows came after

    def take(self, symbols: Sequence[str]) -> pa.Table:
        """The rows of ``symbols`` (as written in the file)."""
        wanted = sorted(set(symbols))
        with self._lock:
            if self._batches is None or self._gone.intersection(wanted):
                self._start()
            high = wanted[-1]
            while not self._done and (not self._sorted or self._last is None or self._last <= high):
                self._read()
            if self._late:
                late, self._late = sorted(self._late), set()
                raise DataUnavailableError(
                    f"massive: {self.label} is not sorted by ticker: rows of "
                    f"{', '.join(late[:10])} came after their partitions were stored; fetch the "
                    "day again with mp ingest --refresh"
                )
            self._answered.update(wanted)
            return self._hand_out(wanted)

    def take_all(self) -> pa.Table:
        """Every row of the file (a small one: it is held whole), left for the units to take."""
        with self._lock:
            if self._batches is None or self._gone:
                self._start()
            while not self._done:
                self._read()
            return pa.concat_tables(self._held) if self._held else pa.table({})

    def _start(self) -> None:
        self._stop()
        self._reset()
        self.passes += 1
        self._batches = read_ahead(self._open(), self._ahead, f"read {self.label}")

    def close(self) -> None:
        """Stops the pass under way (its reading thread); a unit asking after this starts a
        new pass, never a pass cut short."""
        with self._lock:
            self._stop()
            self._batches = None

    def _stop(self) -> None:
        if self._batches is not None:
            self._batches.close()  # type: ignore[attr-defined]

    def _read(self) -> None:
        assert self._batches is not None
        batch = next(self._batches, None)
        if batch is None:
            self._done = True
            return
        tickers = batch.column(0)
        first = tickers[0].as_py()
        if self._sorted and (
            (self._last is not None and first < self._last)
            or (
                len(tickers) > 1 and not pc.all(pc.greater_equal(tickers[1:], tickers[:-1])).as_py()
            )
        ):
            self._sorted = False
            self.notes.append(f"{self.label}: not sorted by ticker; read whole before use")
        if not self._sorted and self._answered:
            seen = pc.unique(tickers).to_pylist()
            self._late.update(t for t in seen if t in self._answered)
        # In a block found in order its last ticker is its greatest (Arrow's max of strings
        # took three times the order check: 0.12 ms a block, 70 ms of a 3-day bench).
        last = tickers[-1].as_py() if self._sorted else pc.max(tickers).as_py()
        self._last = last if self._last is None else max(self._last, last)
        self._held.append(pa.Table.from_batches([batch]))
        self._held_rows += batch.num_rows

    def _hand_out(self, wanted: list[str]) -> pa.Table:
        held = pa.concat_tables(self._held) if self._held else None
        if held is None or held.num_rows == 0:
            self._gone.update(wanted)
            return _empty(held)
        result, rest = _split(held, wanted, self._sorted)
        self._gone.update(wanted)
        if self._sorted and rest.num_rows > HELD_ROWS:
            # Let go of the lowest tickers (those no unit in order still wants) down to the cap;
            # ``rest`` is in file order, which is ticker order here.
            cut = rest.num_rows - HELD_ROWS
            self._gone.update(pc.unique(rest.column(0).slice(0, cut)).to_pylist())
            boundary = rest.column(0)[cut - 1].as_py()
            keep = pc.greater(rest.column(0), boundary)
            rest = rest.filter(keep)
        self._held = [rest] if rest.num_rows else []
        self._held_rows = rest.num_rows
        return result


def _split(held: pa.Table, wanted: list[str], ordered: bool) -> tuple[pa.Table, pa.Table]:
    """The rows of ``wanted`` (sorted) and the others, each in file order. Rows in ticker
    order hold the wanted ones between two bounds found by bisection: only those are matched
    by name (the held rows are up to :data:`HELD_ROWS` beyond a unit's hundred thousand)."""
    lo, hi = 0, held.num_rows
    if ordered:
        tickers = _Tickers(held.column(0))
        lo = bisect.bisect_left(tickers, wanted[0])
        hi = bisect.bisect_right(tickers, wanted[-1], lo)
    region = held.slice(lo, hi - lo)
    mine = pc.is_in(region.column(0), value_set=pa.array(wanted, pa.string()))
    if pc.all(mine).as_py() is not False:  # the usual case: a run of the unit's own tickers
        result, between = region, region.slice(0, 0)
    else:
        result, between = region.filter(mine), region.filter(pc.invert(mine))
    parts = [held.slice(0, lo), between, held.slice(hi)]
    return result, pa.concat_tables([p for p in parts if p.num_rows] or [between])


class _Tickers:
    """A sorted ticker column as a sequence for :mod:`bisect` (a value read per probe)."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._column = column

    def __len__(self) -> int:
        return len(self._column)

    def __getitem__(self, i: int) -> str:
        return self._column[i].as_py()  # type: ignore[no-any-return]


def _empty(held: pa.Table | None) -> pa.Table:
    return held.slice(0, 0) if held is not None else pa.table({})
