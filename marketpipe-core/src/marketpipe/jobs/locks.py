"""Which jobs are running, across processes: one lock file per running job (``filelock``).

A running ``mp ingest`` holds ``<data>/_marketpipe/locks/job=<id>.lock``; the OS releases it when
the process ends in any way (even SIGKILL), so a job whose lock is free is not running, whatever
its recorded state. Starting a job happens under ``claims.lock`` so two processes cannot both
decide that nothing overlaps them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from filelock import FileLock, Timeout

from marketpipe.model.files import file_lock
from marketpipe.storage.layout import META_DIR


class HeldLock:
    def __init__(self, lock: FileLock) -> None:
        self._lock: FileLock | None = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class JobLocks:
    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / META_DIR / "locks"

    def _path(self, job_id: str) -> Path:
        return self.folder / f"job={job_id}.lock"

    def _pid_path(self, job_id: str) -> Path:
        """Which process holds the job (written once it holds the lock file, kept apart from it:
        trying a lock opens its file)."""
        return self.folder / f"job={job_id}.pid"

    def claims(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive section for checking overlaps and taking a job's lock."""
        return file_lock(self.folder / "claims.lock")

    def hold(self, job_id: str) -> HeldLock | None:
        """Take the job's lock, or ``None`` when another process holds it (the job is running)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self._path(job_id), timeout=0, fallback_to_soft=False)
        try:
            lock.acquire()
        except Timeout:
            return None
        self._pid_path(job_id).write_text(str(os.getpid()))
        return HeldLock(lock)

    def is_running(self, job_id: str) -> bool:
        if not self._path(job_id).exists():
            return False
        try:
            held = self.hold(job_id)
        except OSError:  # a read-only dataset: no process here can be writing it
            return False
        if held is None:
            return True
        held.release()
        return False

    def pid(self, job_id: str) -> str:
        try:
            return self._pid_path(job_id).read_text().strip() or "?"
        except OSError:
            return "?"
