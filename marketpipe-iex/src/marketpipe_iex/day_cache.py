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
from marketpipe.storage.atomic import write_atomic

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


def load(path: Path) -> tuple[MinuteBars, list[str]] | None:
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException):
        return None  # unreadable: decode again
    parts = np.zeros(table.num_rows, dtype=PARTIAL)
    for name in PARTIAL.names or ():
        parts[name] = table[name].to_numpy()
    notes = json.loads((table.schema.metadata or {}).get(_NOTES, b"[]"))
    symbol = np.asarray(table["symbol"].to_numpy(zero_copy_only=False), dtype=str)
    return MinuteBars(symbol, table["minute"].to_numpy(), parts), list(notes)
