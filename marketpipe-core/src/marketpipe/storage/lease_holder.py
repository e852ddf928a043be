"""Who holds an object store's lease, told so that a process of the same machine can see that
the holder is gone: a writer killed, or one that exited while the store was unreachable and
could not delete its lease, costs the next run of the same command nothing, where waiting for
the lease to expire cost it up to a minute.

A holder is named by its host name, the machine's boot, its pid namespace, its pid and the
time the process started (Linux' ``/proc``). A lease is taken early only when all of the first
three are this process's and that process no longer runs (no such pid, a zombie, or another
process under the pid since). Anything else (another machine or container, an older lease
without a holder, a system without ``/proc``) waits for the lease to expire, as before.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any

_PROC = Path("/proc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _started(pid: int) -> tuple[str, int] | None:
    """The state and start time (clock ticks after boot) of process ``pid``; None when there is
    no such process. The command name (field 2) may hold spaces and parentheses: the fields
    are counted after its last ')'."""
    stat = _read(_PROC / str(pid) / "stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of stat(5)
    except (IndexError, ValueError):
        return None


@functools.cache
def _machine() -> tuple[str, str, str] | None:
    boot = _read(_PROC / "sys/kernel/random/boot_id")
    try:
        namespace = os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return None
    return (socket.gethostname(), boot, namespace) if boot else None


def this_process() -> dict[str, Any] | None:
    """This process as a lease names its holder; None where it cannot be checked."""
    machine = _machine()
    me = _started(os.getpid())
    if machine is None or me is None:
        return None
    host, boot, namespace = machine
    return {"host": host, "boot": boot, "pidns": namespace, "pid": os.getpid(), "start": me[1]}


def gone(holder: object) -> bool:
    """The lease's holder (as :func:`this_process` named it) is a process of this machine that
    no longer runs. False whenever that cannot be known for certain."""
    if not isinstance(holder, dict):
        return False
    machine = _machine()
    if machine is None or (holder.get("host"), holder.get("boot"), holder.get("pidns")) != machine:
        return False
    pid, start = holder.get("pid"), holder.get("start")
    if type(pid) is not int or type(start) is not int or pid <= 0:
        return False
    now = _started(pid)
    return now is None or now[1] != start or now[0] in ("Z", "X")
