"""``file_lock`` across processes: a real holder in another process, a waiter here."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import filelock
import pytest
from marketpipe.model import files
from marketpipe.model.files import file_lock, folder_lock

HOLDER = """
import sys
from marketpipe.model.files import file_lock
with file_lock(__import__("pathlib").Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_another_process_holds_is_waited_for_then_taken(tmp_path: Path) -> None:
    path = tmp_path / "month" / ".lock"
    holder = _holder(path)
    taken = threading.Event()
    leave = threading.Event()

    def wait_for_it() -> None:
        with file_lock(path):
            taken.set()
            leave.wait(30)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    try:
        assert not taken.wait(0.3), "taken while another process held it"
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert taken.wait(30)
    finally:
        leave.set()
        waiter.join(30)
        holder.kill()
        holder.wait(30)


def test_a_holder_killed_leaves_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = _holder(path)
    holder.kill()
    holder.wait(30)
    with folder_lock(tmp_path):  # the same file: the OS let go of the dead process's flock
        pass


def test_another_process_is_polled_often_not_every_50_ms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """filelock's default waits 50 ms between tries: a Dask worker's commits and the client's
    catalog updates, taking a month folder's lock in turns, each lost up to that much."""
    asked: list[float | None] = []
    acquire = filelock.FileLock.acquire

    def recording(self: filelock.FileLock, *args: object, **kwargs: object) -> object:
        asked.append(kwargs.get("poll_interval"))  # type: ignore[arg-type]
        return acquire(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(filelock.FileLock, "acquire", recording)
    with file_lock(tmp_path / ".lock"):
        pass
    assert asked and all(p is not None and p <= 0.005 for p in asked), asked
    assert files.POLL_SECONDS <= 0.005
