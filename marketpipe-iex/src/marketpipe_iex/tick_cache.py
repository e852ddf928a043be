"""A capture's trades and quotes, decoded once and kept beside its minute bars.

The decode that makes a day's bars for a tick request (``--kind trades`` or ``quotes``) also
writes every trade and quote of the day to two Parquet files in the cache as the capture is
read, in runs of :data:`RUN_ROWS` rows each sorted by symbol (stably: a symbol's ticks stay in
the capture's order): memory holds one run, never the day, and a unit reads only the row groups
that can hold its symbols (a whole market's day is read by hundreds of units). Trades are kept
as reported, with their position in the capture's stream (``_at``); the day's breaks (a
handful) are kept in the trades file's footer and applied when a request reads its symbols,
matched as the bars match them: the latest earlier trade of the same symbol and trade id.

Both files are written under temporary names and renamed into place after the whole capture was
read, the trades file last: a decode cut short leaves no tick file, and the next request decodes
again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from marketpipe.model.ticks import QUOTE_SCHEMA, TRADE_SCHEMA

from marketpipe_iex.decode.trades import BREAK, TRADE_REPORT, TradeBatch, symbol_names
from marketpipe_iex.ticks import cancel, quote_table, trade_rows

_AT = "_at"
_BREAKS = b"marketpipe_iex.breaks"
_ZERO = b"marketpipe_iex.zero_quotes"
_TRADES = TRADE_SCHEMA.append(pa.field(_AT, pa.int64()))
#: Rows buffered, then sorted by symbol and written, at a time.
RUN_ROWS = 500_000
#: Rows a row group: a symbol's share of a run spans one or two.
GROUP_ROWS = 32_768


class _Runs:
    """One kind's file, written a run at a time, each run sorted by symbol. Runs are sorted and
    written on ``writes`` (one thread, beside the decode: Arrow's sort and Parquet encoder run
    without the GIL), one at a time: memory holds the run being written and the one filling.
    Turning records into rows stays on the decode's thread: numpy holds the GIL for it, and on
    the writing thread it slowed the decode more than it saved (bench_ticks.py)."""

    def __init__(self, path: Path, schema: pa.Schema, writes: ThreadPoolExecutor) -> None:
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.pending: list[pa.Table] = []
        self.rows = 0
        self._writes = writes
        self._writing: Future[None] | None = None

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= RUN_ROWS:
            self.flush()

    def flush(self) -> None:
        self.wait()
        if self.pending:
            self._writing = self._writes.submit(self._write, self.pending)
        self.pending, self.rows = [], 0

    def wait(self) -> None:
        """The run being written, written (its error raised here)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _write(self, pending: list[pa.Table]) -> None:
        run = pa.concat_tables(pending).sort_by("symbol")  # stable: stream order kept
        self.writer.write_table(run, row_group_size=GROUP_ROWS)


def tick_files(bars_file: Path) -> tuple[Path, Path]:
    """The trades and quotes files kept beside a day's bars file."""
    stem = bars_file.name.removesuffix(".bars.parquet")
    return bars_file.with_name(f"{stem}.trades.parquet"), bars_file.with_name(
        f"{stem}.quotes.parquet"
    )


class TickWriter:
    """Writes a capture's trades and quotes as its decode reads them."""

    def __init__(self, trades: Path, quotes: Path) -> None:
        self._paths = (trades, quotes)
        trades.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = tuple(p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in self._paths)
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="tick-cache")
        self._trades = _Runs(self._tmp[0], _TRADES, self._writes)
        self._quotes = _Runs(self._tmp[1], QUOTE_SCHEMA, self._writes)
        self._position = 0
        self._breaks: list[tuple[int, int, int, int]] = []
        self.zero_quotes = 0

    def add(self, batch: TradeBatch, quotes: np.ndarray) -> None:
        record = batch.record
        at = np.arange(self._position, self._position + len(record), dtype=np.int64)
        self._position += len(record)
        is_break = record["type"] == BREAK
        if is_break.any():
            for brk, when in zip(record[is_break], at[is_break], strict=True):
                self._breaks.append(
                    (int(brk["symbol"]), int(brk["trade_id"]), int(when), int(brk["timestamp"]))
                )
        trades = record[~is_break]
        if len(trades):
            rows = trade_rows(trades).append_column(_AT, pa.array(at[~is_break], pa.int64()))
            self._trades.add(rows)
        if len(quotes):
            found = quote_table([quotes])
            self.zero_quotes += found.zero
            if found.table.num_rows:
                self._quotes.add(found.table)

    def finish(self) -> None:
        """Close both files and put them in place (the trades file last)."""
        for runs in (self._trades, self._quotes):
            runs.flush()
            runs.wait()
        self._writes.shutdown()
        self._trades.writer.add_key_value_metadata(
            {_BREAKS: json.dumps(self._breaks).encode(), _ZERO: str(self.zero_quotes).encode()}
        )
        self._trades.writer.close()
        self._quotes.writer.close()
        os.replace(self._tmp[1], self._paths[1])
        os.replace(self._tmp[0], self._paths[0])

    def abandon(self) -> None:
        for runs in (self._trades, self._quotes):
            with contextlib.suppress(Exception):
                runs.wait()
        self._writes.shutdown()
        for runs in (self._trades, self._quotes):
            with contextlib.suppress(OSError, pa.ArrowException):
                runs.writer.close()
        for tmp in self._tmp:
            tmp.unlink(missing_ok=True)


@attrs.frozen
class DayTrades:
    table: pa.Table
    #: Breaks of the symbols read that named no earlier trade (not stored).
    unmatched: int


def _where(symbols: Sequence[str], start_ns: int, end_ns: int) -> pc.Expression:
    stamp = TRADE_SCHEMA.field("timestamp").type
    return (
        pc.field("symbol").isin(pa.array(sorted(symbols), pa.string()))
        & (pc.field("timestamp") >= pa.scalar(start_ns, pa.int64()).cast(stamp))
        & (pc.field("timestamp") < pa.scalar(end_ns, pa.int64()).cast(stamp))
    )


def read_trades(path: Path, symbols: Sequence[str], start_ns: int, end_ns: int) -> DayTrades:
    """The trades of ``symbols`` stamped in ``[start_ns, end_ns)``, in the capture's order,
    the day's breaks of those symbols applied; ``unmatched`` counts the breaks stamped in that
    span that named none of the trades read."""
    meta = pq.read_metadata(path).metadata or {}
    breaks = json.loads(meta.get(_BREAKS, b"[]"))
    table = pq.read_table(path, filters=_where(symbols, start_ns, end_ns))
    at = np.asarray(table[_AT].to_numpy(), dtype=np.int64)
    table = table.drop_columns([_AT])
    record = np.zeros(len(breaks), dtype=TRADE_REPORT)
    record["type"] = BREAK
    for i, (symbol, trade_id, _, _) in enumerate(breaks):
        record[i]["symbol"], record[i]["trade_id"] = symbol, trade_id
    where = np.array([b[2] for b in breaks], dtype=np.int64)
    mine = (
        np.isin(symbol_names(record["symbol"]), list(symbols))
        if len(record)
        else np.zeros(0, dtype=bool)
    )
    stamps = np.array([b[3] for b in breaks], dtype=np.int64)
    inside = (stamps >= start_ns) & (stamps < end_ns)
    # Breaks stamped outside the span may name trades read (a 16:05 break of a 15:59 trade):
    # applied, but one naming no trade read is not this span's to report.
    table = cancel(table, at, record[mine & ~inside], where[mine & ~inside]).table
    found = cancel(table, at, record[mine & inside], where[mine & inside])
    return DayTrades(found.table.replace_schema_metadata(None), found.unmatched)


def read_quotes(path: Path, symbols: Sequence[str], start_ns: int, end_ns: int) -> pa.Table:
    """The quotes of ``symbols`` stamped in ``[start_ns, end_ns)``, in the capture's order."""
    table = pq.read_table(path, filters=_where(symbols, start_ns, end_ns))
    return table.replace_schema_metadata(None)


def zero_quotes(trades_path: Path) -> int:
    meta = pq.read_metadata(trades_path).metadata or {}
    return int(meta.get(_ZERO, b"0"))
