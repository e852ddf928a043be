"""Upgrade a dataset written before series had an ``adjustment`` key, in place, on first use.

Layout 1 was ``provider=/feed=/timeframe=/month=``; layout 2 adds ``adjustment=`` after ``feed``.
Each file moves with one ``rename`` (atomic on one file system) to the series its job fetched
(Alpaca's ``adjustment`` setting, ``raw`` for everything else); the job store's paths follow;
only then does ``_marketpipe/layout`` record layout 2. A crash at any point leaves every file
either moved or not, and the next run (which finds no marker) carries on from there: the upgrade
is resumable, and says once what it did. See :func:`marketpipe.run.pipeline.open_dataset`.
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

LAYOUT = "2"
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
