"""A lease's holder is gone only when it certainly is: a process of this machine (host, boot,
pid namespace) that no longer runs under its pid."""

import subprocess
import sys
import time

import pytest
from marketpipe.storage import lease_holder

pytestmark = pytest.mark.skipif(
    lease_holder.this_process() is None, reason="needs Linux' /proc to name a process"
)


def holder_of(pid: int) -> dict:
    started = lease_holder._started(pid)
    assert started is not None
    me = lease_holder.this_process()
    assert me is not None
    return {**me, "pid": pid, "start": started[1]}


def test_a_running_process_holds_its_lease_and_a_killed_one_does_not() -> None:
    me = lease_holder.this_process()
    assert me is not None and not lease_holder.gone(me)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        holder = holder_of(child.pid)
        assert not lease_holder.gone(holder)
        child.kill()
        deadline = time.monotonic() + 10
        while (lease_holder._started(child.pid) or ("Z",))[0] != "Z":  # killed, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert lease_holder.gone(holder)  # a zombie
    finally:
        child.kill()
        child.wait()
    assert lease_holder.gone(holder)  # reaped: no such pid


def test_a_holder_of_another_machine_or_of_unknown_shape_is_never_gone() -> None:
    me = lease_holder.this_process()
    assert me is not None
    reused = {**me, "start": me["start"] + 1}  # another process under this pid since
    assert lease_holder.gone(reused)
    for other in ({"host": "elsewhere"}, {"boot": "another-boot"}, {"pidns": "pid:[1]"}):
        assert not lease_holder.gone({**reused, **other})
    for junk in (None, "vm:1:ab", {}, {**me, "pid": "1"}, {**me, "start": None}, {**me, "pid": 0}):
        assert not lease_holder.gone(junk)
