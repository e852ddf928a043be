"""Where bars, trades and quotes live under the data root: each kind in a hive tree of its own.

    <root>/bars/provider=<p>/feed=<f>/adjustment=<a>/timeframe=<tf>/month=<YYYY-MM>/part-<job>-<hash>.parquet
    <root>/trades/provider=<p>/feed=<f>/adjustment=<a>/month=<YYYY-MM>/part-<job>-<hash>.parquet
    <root>/quotes/provider=<p>/feed=<f>/adjustment=<a>/month=<YYYY-MM>/part-<job>-<hash>.parquet

The tree and the keys name the series (see :class:`~marketpipe.model.values.Series`): a reader
of ``<root>/bars`` reads bars only, whatever else the dataset holds, and every ``*.parquet`` in a
kind's tree has that kind's schema and these hive keys; nothing else is named ``*.parquet``.
(Datasets written before ticks kept bars at the root: :mod:`.upgrade` moves them, once.)
Bookkeeping (job store, quarantine) lives under ``<root>/_marketpipe/``, which dataset
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
#: The same for bars built from stored trades (``mp resample --from trades``).
FROM_TRADES_SUFFIX = "-from-trades"


def is_derived(feed: str) -> bool:
    """A feed ``mp resample`` wrote (nothing a provider serves)."""
    return feed.endswith((DERIVED_SUFFIX, FROM_TRADES_SUFFIX))


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


#: The top folder of each kind's tree.
KIND_TREES = ("bars", "trades", "quotes")


def series_prefix(series: Series) -> str:
    """The series' folder relative to the root (posix)."""
    prefix = (
        f"{series.kind.value}"
        f"/provider={encode_component(series.provider)}"
        f"/feed={encode_component(series.feed)}"
        f"/adjustment={encode_component(series.adjustment)}"
    )
    return f"{prefix}/timeframe={series.timeframe.value}" if series.timeframe.is_bar else prefix


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
    for kind in (k for k in children("") if k in KIND_TREES):
        for p in children(kind):
            if _value(p, "provider") is None:
                continue
            for f in children(f"{kind}/{p}"):
                if _value(f, "feed") is None:
                    continue
                for a in children(f"{kind}/{p}/{f}"):
                    if _value(a, "adjustment") is None:
                        continue
                    base = f"{kind}/{p}/{f}/{a}"
                    leaves = children(base) if kind == "bars" else [""]
                    for t in leaves:
                        rel = f"{base}/{t}/month=x/f.parquet" if t else f"{base}/month=x/f.parquet"
                        series = series_of_path(rel)
                        if series is not None:
                            found.append(series)
    return sorted(found)


def _value(name: str, key: str) -> str | None:
    prefix = f"{key}="
    return unquote(name[len(prefix) :]) if name.startswith(prefix) else None


def stored_series(root: Path) -> list[Series]:
    """The series that have a folder under ``root``."""

    def children(rel: str) -> list[str]:
        folder = root / rel if rel else root
        try:
            return sorted(p.name for p in folder.iterdir() if p.is_dir())
        except OSError:
            return []

    return series_in(children)


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
    """The series of a data file's path relative to the root (``None``: not one's)."""
    kind, _, rest = rel.partition("/")
    if kind not in KIND_TREES:
        return None
    parts = rest.split("/")
    keys = _KEYS if kind == "bars" else _KEYS[:3]
    if len(parts) < len(keys) + 2:
        return None
    values = [_value(p, k) for p, k in zip(parts[: len(keys)], keys, strict=True)]
    if None in values:
        return None
    provider, feed, adjustment = (v or "" for v in values[:3])
    try:
        timeframe = (
            Timeframe.parse(values[3] or "", bars_only=True) if kind == "bars" else Timeframe(kind)
        )
        return Series(provider, feed, adjustment, timeframe)
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
