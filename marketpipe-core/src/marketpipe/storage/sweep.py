"""Remove temp files a killed process left behind (``.<name>.tmp``), under each folder's lock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from marketpipe.model.files import folder_lock
from marketpipe.model.values import IngestionJobId, Series
from marketpipe.storage.layout import META_DIR, month_folder, month_key


def _sweep(folder: Path) -> int:
    removed = 0
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed


def sweep_temp_files(
    root: Path, series: Series, job_id: IngestionJobId, days: list[dt.date]
) -> int:
    """Temp files in the job's month folders and its quarantine folder. A writer holds the
    folder's lock for the whole of a commit, so a temp file seen under the lock is a leftover."""
    removed = 0
    for month in sorted({month_key(d) for d in days}):
        folder = month_folder(root, series, month)
        if folder.is_dir():
            with folder_lock(folder):
                removed += _sweep(folder)
    quarantine = root / META_DIR / "quarantine" / f"job={job_id}"
    if quarantine.is_dir():
        for folder in [quarantine, *quarantine.iterdir()]:
            if folder.is_dir():
                removed += _sweep(folder)
    return removed
