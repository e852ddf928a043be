"""Upgrade a dataset written by an earlier release to the current layout, in place, on first use.

Layout 1 was ``provider=/feed=/timeframe=/month=``; layout 2 added ``adjustment=`` after
``feed``; layout 3 puts each kind of data in a tree of its own, bars under ``bars/`` (trades and
quotes beside them), so that a reader of ``bars/`` never meets a tick file.

1 to 2: each file moves with one ``rename`` (atomic on one file system) to the series its job
fetched (Alpaca's ``adjustment`` setting, ``raw`` for everything else). 2 to 3: each
``provider=`` folder moves under ``bars/`` with one ``rename`` (in an object store, each file
with a copy and a delete). The job store's paths follow; only then does ``_marketpipe/layout``
record layout 3. A crash at any point leaves every file or folder either moved or not, and the
next run (which finds the old marker, or none) carries on from there: the upgrade is
resumable, and says once what it did (:func:`marketpipe.jobs.upgrade.open_dataset`, which every
command that opens a dataset calls first).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa

from marketpipe.model.files import fsync_dir
from marketpipe.model.values import RAW
from marketpipe.storage.footer import JOB_KEY
from marketpipe.storage.layout import META_DIR, encode_component, inside
from marketpipe.storage.parquet_files import file_metadata
from marketpipe.storage.store import BAR_SUFFIX, STAGED, Store

LAYOUT = "3"
#: Where layout 3 keeps the bars that layouts 1 and 2 kept at the root.
BARS = "bars"
_OLD_FILES = "provider=*/feed=*/timeframe=*/month=*/*.parquet"

#: ``(provider, job id) -> adjustment`` of the bars that job fetched.
AdjustmentOf = Callable[[str, str], str]


def _marker(root: Path) -> Path:
    return root / META_DIR / "layout"


def is_current(root: Path) -> bool:
    marker = _marker(root)
    try:
        return marker.read_text().strip() == LAYOUT
    except FileNotFoundError:
        return False


def upgrade_lock(root: Path) -> Path:
    return root / META_DIR / "locks" / "upgrade.lock"


def new_path(rel: str, adjustment: str) -> str | None:
    """The layout-2 form of a layout-1 path relative to the root (``None``: not layout 1)."""
    parts = rel.split("/")
    if len(parts) < 3 or not parts[2].startswith("timeframe="):
        return None
    if not (parts[0].startswith("provider=") and parts[1].startswith("feed=")):
        return None
    return "/".join([*parts[:2], f"adjustment={encode_component(adjustment)}", *parts[2:]])


def _job_of(path: Path) -> str:
    try:
        meta = file_metadata(path)
    except (OSError, pa.ArrowException):
        return ""
    return str(meta.get(JOB_KEY, b"").decode(errors="replace"))


def move_layout1_files(root: Path, adjustment_of: AdjustmentOf) -> int:
    """Move layout-1 files to layout 2 (the caller holds :func:`upgrade_lock`); returns how many
    moved."""
    count = 0
    for path in sorted(root.glob(_OLD_FILES)):
        rel = path.relative_to(root).as_posix()
        provider = unquote(rel.split("/", 1)[0].removeprefix("provider="))
        adjustment = adjustment_of(provider, _job_of(path)) or RAW
        target_rel = new_path(rel, adjustment)
        if target_rel is None:
            continue
        target = inside(root, root / target_rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        fsync_dir(target.parent)
        count += 1
    for folder in sorted(root.glob("provider=*/feed=*/timeframe=*/month=*"), reverse=True):
        (folder / ".lock").unlink(missing_ok=True)
        _remove_if_empty(folder)
    for folder in sorted(root.glob("provider=*/feed=*/timeframe=*")):
        _remove_if_empty(folder)
    return count


def _remove_if_empty(folder: Path) -> None:
    # Something still in it (a file MarketPipe did not write) is left alone.
    with contextlib.suppress(OSError):
        folder.rmdir()


def mark_current(root: Path) -> None:
    """Record that the dataset is at the current layout."""
    marker = _marker(root)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".layout.{os.getpid()}.tmp")
    tmp.write_text(LAYOUT + "\n")
    os.replace(tmp, marker)


def in_kind_tree(rel: str) -> str | None:
    """The layout-3 form of a layout-2 path relative to the root (``None``: not layout 2)."""
    return f"{BARS}/{rel}" if rel.startswith("provider=") else None


def move_bars_to_their_tree(root: Path) -> int:
    """Move each ``provider=`` folder of the local ``root`` under ``bars/`` (the caller holds
    :func:`upgrade_lock`); returns how many files moved with them."""
    count = 0
    for folder in sorted(root.glob("provider=*")):
        if not folder.is_dir():
            continue
        target = inside(root, root / BARS / folder.name)
        count += sum(1 for _ in folder.glob("*/*/*/month=*/*.parquet*"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # both: another writer made it since; move the files one by one
            for path in sorted(folder.rglob("*.parquet*")):
                dest = target / path.relative_to(folder)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            continue
        os.replace(folder, target)
        fsync_dir(target.parent)
    fsync_dir(root)
    return count


def move_objects_to_their_tree(store: Store) -> int:
    """The same in an object store: every bar file (and staged file) under a ``provider=``
    prefix is copied under ``bars/`` and removed; returns how many moved."""
    count = 0

    def walk(folder: str, depth: int) -> None:
        nonlocal count
        if depth == 5:  # provider/feed/adjustment/timeframe/month
            for suffix in (BAR_SUFFIX, STAGED):
                for name in sorted(store.listing(folder, suffix=suffix)):
                    store.rename(f"{folder}/{name}", f"{BARS}/{folder}/{name}")
                    count += 1
            return
        for child in store.children(folder):
            walk(f"{folder}/{child}" if folder else child, depth + 1)

    for top in store.children(""):
        if top.startswith("provider="):
            walk(top, 1)
    return count
