"""Which jobs are running, across processes: one ``flock`` per running job.

A running ``mp ingest`` holds ``<data>/_marketpipe/locks/job=<id>.lock``; the OS releases it when
the process ends in any way (even SIGKILL), so a job whose lock is free is not running, whatever
its recorded state. Starting a job happens under ``claims.lock`` so two processes cannot both
decide that nothing overlaps them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from marketpipe.storage.atomic import file_lock
from marketpipe.storage.layout import META_DIR


class HeldLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class JobLocks:
    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / META_DIR / "locks"

    def _path(self, job_id: str) -> Path:
        return self.folder / f"job={job_id}.lock"

    def claims(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive section for checking overlaps and taking a job's lock."""
        return file_lock(self.folder / "claims.lock")

    def hold(self, job_id: str) -> HeldLock | None:
        """Take the job's lock, or ``None`` when another process holds it (the job is running)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(job_id), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return HeldLock(fd)

    def is_running(self, job_id: str) -> bool:
        if not self._path(job_id).exists():
            return False
        held = self.hold(job_id)
        if held is None:
            return True
        held.release()
        return False

    def pid(self, job_id: str) -> str:
        try:
            return self._path(job_id).read_text().strip() or "?"
        except OSError:
            return "?"
