"""Where bars live under the data root.

    <root>/provider=<p>/feed=<f>/adjustment=<a>/timeframe=<tf>/month=<YYYY-MM>/part-<job>-<hash>.parquet

The first four keys name the series (see :class:`~marketpipe.model.values.Series`).
Every ``*.parquet`` under the root is a bar file with these five hive keys; nothing else is named
``*.parquet``. Bookkeeping (job store, quarantine) lives under ``<root>/_marketpipe/``, which dataset
readers skip because of the leading underscore. A month folder holds a few files of many symbols
and days each: one file per symbol per day would be far too small to write or query fast.
Hive values are percent-encoded, and every path is checked to stay inside the root.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote

from marketpipe.model.values import Series, Timeframe

META_DIR = "_marketpipe"
#: Markers of the jobs whose commits are staged, not yet published (``<job id>.staged``).
STAGING = f"{META_DIR}/staging"
#: The feed suffix of series derived by ``mp resample`` (``feed=sim-from-1m``): their own
#: series, never a provider's own bars of that timeframe.
DERIVED_SUFFIX = "-from-1m"


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


def inside(root: Path, path: Path, resolved_root: Path | None = None) -> Path:
    """``path`` if it resolves inside ``root`` (``resolved_root``: ``root`` resolved already);
    a ValueError otherwise (our bug, never allowed)."""
    resolved_root = resolved_root or root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ValueError(f"refusing to write {path}: outside the data root {root}")
    return path


def month_key(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def series_prefix(series: Series) -> str:
    """The series' folder relative to the root (posix)."""
    return (
        f"provider={encode_component(series.provider)}"
        f"/feed={encode_component(series.feed)}"
        f"/adjustment={encode_component(series.adjustment)}"
        f"/timeframe={series.timeframe.value}"
    )


def month_prefix(series: Series, month: str) -> str:
    return f"{series_prefix(series)}/month={encode_component(month)}"


def series_folder(root: Path, series: Series) -> Path:
    return inside(root, root / series_prefix(series))


def month_folder(root: Path, series: Series, month: str) -> Path:
    return inside(root, root / month_prefix(series, month))


def month_of(folder_name: str) -> str | None:
    """``YYYY-MM`` of a ``month=YYYY-MM`` folder name (``None``: not one)."""
    return _value(folder_name, "month")


def series_in(children: Callable[[str], list[str]]) -> list[Series]:
    """The series whose folders ``children(folder)`` lists (a store's folders)."""
    found = []
    for p in children(""):
        for f in children(p) if _value(p, "provider") is not None else []:
            for a in children(f"{p}/{f}") if _value(f, "feed") is not None else []:
                for t in children(f"{p}/{f}/{a}") if _value(a, "adjustment") is not None else []:
                    series = series_of_path(f"{p}/{f}/{a}/{t}/month=x/f.parquet")
                    if series is not None:
                        found.append(series)
    return sorted(found)


def _value(name: str, key: str) -> str | None:
    prefix = f"{key}="
    return unquote(name[len(prefix) :]) if name.startswith(prefix) else None


def stored_series(root: Path) -> list[Series]:
    """The series that have a folder under ``root``."""
    found = []
    for folder in sorted(root.glob("provider=*/feed=*/adjustment=*/timeframe=*")):
        parts = folder.relative_to(root).parts
        values = [_value(p, k) for p, k in zip(parts, _KEYS, strict=True)]
        if None in values or not folder.is_dir():
            continue
        provider, feed, adjustment, timeframe = (v or "" for v in values)
        try:
            found.append(Series(provider, feed, adjustment, Timeframe.parse(timeframe)))
        except ValueError:
            continue  # a folder MarketPipe did not make
    return found


def month_folders(root: Path, series: Series) -> dict[str, Path]:
    """``YYYY-MM -> folder`` for every month folder of ``series``."""
    base = series_folder(root, series)
    if not base.is_dir():
        return {}
    return {
        month: path
        for path in sorted(base.iterdir())
        if (month := _value(path.name, "month")) is not None and path.is_dir()
    }


_KEYS = ("provider", "feed", "adjustment", "timeframe")


def series_of_path(rel: str) -> Series | None:
    """The series of a bar file's path relative to the root (``None``: not a bar file's)."""
    parts = rel.split("/")
    if len(parts) < 6:
        return None
    values = [_value(p, k) for p, k in zip(parts[:4], _KEYS, strict=True)]
    if None in values:
        return None
    provider, feed, adjustment, timeframe = (v or "" for v in values)
    try:
        return Series(provider, feed, adjustment, Timeframe.parse(timeframe))
    except ValueError:
        return None


def quarantine_file(root: Path, job_id: str, symbol: str, day: str) -> Path:
    return inside(root, root / quarantine_rel(job_id, symbol, day))


def quarantine_rel(job_id: str, symbol: str, day: str) -> str:
    """The quarantine file of a partition, relative to the dataset's root (a folder or a
    bucket prefix); symbol and day are encoded, so neither can leave the job's folder."""
    return (
        f"{META_DIR}/quarantine/job={job_id}"
        f"/symbol={_bounded(encode_component(symbol))}/{_bounded(encode_component(day))}.csv"
    )
