"""Where bars live under the data root.

    <root>/provider=<p>/feed=<f>/timeframe=<tf>/month=<YYYY-MM>/part-<job>-<hash>.parquet

Every ``*.parquet`` under the root is a bar file with these four hive keys; nothing else is named
``*.parquet``. Bookkeeping (job store, quarantine) lives under ``<root>/_marketpipe/``, which dataset
readers skip because of the leading underscore. A month folder holds a few files of many symbols
and days each: one file per symbol per day would be far too small to write or query fast.
Hive values are percent-encoded, and every path is checked to stay inside the root.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from urllib.parse import quote

from marketpipe.ingestion.domain.values import Timeframe

META_DIR = "_marketpipe"


def encode_component(value: str) -> str:
    """Percent-encode a value for one path component; dots too, so it is never ``.`` or ``..``."""
    return quote(value, safe="").replace(".", "%2E")


def _bounded(component: str, limit: int = 120) -> str:
    """A path component of at most ``limit`` characters: a longer one (a provider's absurd
    symbol) keeps its start and a digest of the whole, so it stays unique and a legal name."""
    if len(component) <= limit:
        return component
    digest = hashlib.sha1(component.encode()).hexdigest()[:16]
    return f"{component[: limit - 18]}~{digest}"


def inside(root: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``root``; a ValueError otherwise (our bug, never allowed)."""
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ValueError(f"refusing to write {path}: outside the data root {root}")
    return path


def month_key(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_folder(root: Path, provider: str, feed: str, timeframe: Timeframe, month: str) -> Path:
    folder = (
        root
        / f"provider={encode_component(provider)}"
        / f"feed={encode_component(feed)}"
        / f"timeframe={timeframe.value}"
        / f"month={month}"
    )
    return inside(root, folder)


def quarantine_file(root: Path, job_id: str, symbol: str, day: str) -> Path:
    path = (
        root
        / META_DIR
        / "quarantine"
        / f"job={job_id}"
        / f"symbol={_bounded(encode_component(symbol))}"
        / f"{_bounded(encode_component(day))}.csv"
    )
    return inside(root, path)
