"""Decoded days: one pass over a capture gives every symbol's one-minute bars, kept on disk.

A capture is decoded once, ever: every later request for that day (other symbols, another
timeframe, a resumed job, ``--all-symbols`` listing then ingesting) reads the small file of
minute bars instead of the multi-GB capture. The file is keyed by the capture's path, size and
modification time and by the decoder's version, and committed atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from marketpipe.model.files import write_atomic

from marketpipe_iex.bars import PARTIAL, MinuteBars

#: Bump when decoding or bar-building changes what a capture yields.
DECODER_VERSION = "1"
_NOTES = b"marketpipe_iex.notes"


def cache_file(folder: Path, capture: Path) -> Path:
    stat = capture.stat()
    identity = f"{capture.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{DECODER_VERSION}"
    digest = hashlib.sha1(identity.encode()).hexdigest()[:16]
    stem = capture.name.split(".")[0]
    return folder / f"{stem}-{digest}.bars.parquet"


def save(path: Path, bars: MinuteBars, notes: list[str]) -> None:
    columns: dict[str, pa.Array] = {
        "symbol": pa.array(bars.symbol, pa.string()),
        "minute": pa.array(bars.minute, pa.int64()),
    }
    for name in PARTIAL.names or ():
        columns[name] = pa.array(bars.parts[name])
    table = pa.table(columns).replace_schema_metadata({_NOTES: json.dumps(notes).encode()})

    def write(fh: BinaryIO) -> None:
        pq.write_table(table, fh, compression="zstd")

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)


#: The columns a day-cache file must have, exactly: anything else is decoded again.
SCHEMA = pa.schema(
    [("symbol", pa.string()), ("minute", pa.int64())]
    + [(name, pa.from_numpy_dtype(PARTIAL[name])) for name in PARTIAL.names or ()]
)


def load(path: Path) -> tuple[MinuteBars, list[str]] | None:
    """The decoded day kept at ``path``, or ``None`` when it is missing, unreadable or not of
    this version's schema (the capture is then decoded again and the file replaced)."""
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
        if not table.schema.remove_metadata().equals(SCHEMA) or table["symbol"].null_count:
            return None
        notes = json.loads((table.schema.metadata or {}).get(_NOTES, b"[]"))
    except (OSError, ValueError, pa.ArrowException):
        return None  # unreadable: decode again
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        return None
    parts = np.zeros(table.num_rows, dtype=PARTIAL)
    for name in PARTIAL.names or ():
        parts[name] = table[name].to_numpy()
    symbol = np.asarray(table["symbol"].to_numpy(zero_copy_only=False), dtype=str)
    return MinuteBars(symbol, table["minute"].to_numpy(), parts), list(notes)
