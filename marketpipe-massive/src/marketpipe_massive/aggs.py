"""Aggregate files (``minute_aggs_v1``, ``day_aggs_v1``) read as canonical bar batches.

The CSV is parsed incrementally by pyarrow's streaming reader, a block at a time. Its header is
checked against the columns MarketPipe needs (a missing or renamed one refuses the day; an extra
one is left out and named in a note), and every value is parsed as a number or the day is
refused. ``volume`` is read as a decimal: 2026 files carry fractional volumes, which are rounded
to the nearest whole share, halves to even (MarketPipe's volume is an integer count), never
truncated; each row's change
travels in an extra column, :data:`ROUNDING`, that the provider counts and drops.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from marketpipe.model.errors import DataUnavailableError
from marketpipe.model.schema import LOOSE_BAR_SCHEMA

NEEDED = ("ticker", "volume", "open", "close", "high", "low", "window_start")
TYPES = {
    "ticker": pa.string(),
    "volume": pa.float64(),
    "open": pa.float64(),
    "close": pa.float64(),
    "high": pa.float64(),
    "low": pa.float64(),
    "window_start": pa.int64(),
    "transactions": pa.float64(),
}
BLOCK = 1024 * 1024  # larger blocks parse no faster and hold more (8 MB: +160 MB RSS)
#: The volume's change by rounding to whole shares (0 for a whole volume).
ROUNDING = "volume_rounding"
SCHEMA = LOOSE_BAR_SCHEMA.append(pa.field(ROUNDING, pa.float64()))


def refused(label: str, exc: Exception) -> DataUnavailableError:
    """A day file that cannot be read, in one line: the day is refused whole."""
    text = str(exc).strip().splitlines()[0][:200]
    return DataUnavailableError(f"massive: {label}: {text}; the day is refused")


def open_day_file(
    stream: io.RawIOBase,
    label: str,
    types: dict[str, pa.DataType],
    needed: tuple[str, ...],
) -> tuple[pacsv.CSVStreamingReader, list[str], list[str]]:
    """A day file's streaming CSV reader, a block at a time, every value typed as ``types``
    says; its header's names; notes. A header without one of ``needed`` refuses the day; a
    column ``types`` does not name is left out and named in a note."""
    try:
        reader = pacsv.open_csv(
            io.BufferedReader(stream, BLOCK),
            read_options=pacsv.ReadOptions(block_size=BLOCK, use_threads=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise refused(label, exc) from None
    names = reader.schema.names
    missing = [c for c in needed if c not in names]
    if missing:
        raise DataUnavailableError(
            f"massive: {label}: the header lacks {', '.join(missing)} (it has "
            f"{', '.join(names)[:200]}); the day is refused"
        )
    extra = [c for c in names if c not in types]
    notes = [f"{label}: column(s) {', '.join(extra)} not known to MarketPipe, left out"]
    return reader, names, notes if extra else []


def blocks(reader: pacsv.CSVStreamingReader, label: str) -> Iterator[pa.RecordBatch]:
    """A day file's blocks that hold rows; one that cannot be parsed refuses the day."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise refused(label, exc) from None
        if batch.num_rows:
            yield batch


class AggReader:
    """One file's rows as canonical bar batches (``symbol`` is the file's ticker as written),
    with what was noticed on the way in :attr:`notes`."""

    def __init__(self, stream: io.RawIOBase, label: str) -> None:
        self.label = label
        self.rows = 0
        self._reader, names, self.notes = open_day_file(stream, label, TYPES, NEEDED)
        self._has_count = "transactions" in names

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in blocks(self._reader, self.label):
            self.rows += batch.num_rows
            yield self._canonical(batch)

    def _canonical(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        volume = batch.column("volume").to_numpy(zero_copy_only=False)
        whole = np.rint(volume)
        if not np.isfinite(whole).all() or np.abs(whole).max(initial=0) >= 2**62:
            raise DataUnavailableError(
                f"massive: {self.label}: a volume is not a finite count of shares; the day "
                "is refused"
            )
        count = (
            pc.cast(pc.round(batch.column("transactions")), pa.int64(), safe=False)
            if self._has_count
            else pa.nulls(batch.num_rows, pa.int64())
        )
        return pa.RecordBatch.from_arrays(
            [
                batch.column("ticker"),
                pc.cast(batch.column("window_start"), pa.timestamp("ns", tz="UTC")),
                batch.column("open"),
                batch.column("high"),
                batch.column("low"),
                batch.column("close"),
                pa.array(whole.astype(np.int64), pa.int64()),
                count,
                pa.nulls(batch.num_rows, pa.float64()),
                pa.array(np.abs(whole - volume), pa.float64()),
            ],
            schema=SCHEMA,
        )
