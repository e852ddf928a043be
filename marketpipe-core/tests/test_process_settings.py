"""What every mp process sets for itself: glibc's malloc keeps a command's freed buffers for
reuse (``marketpipe.run.process``, seen from outside: the process's resident memory after
freeing a large buffer), a thread waiting for the GIL gets it sooner, and numpy's BLAS starts
no threads of its own."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from marketpipe.model.values import Symbol, TimeRange
from marketpipe.run.pipeline import IngestRequest, run_ingest

#: The malloc tests need glibc (mallopt and /proc); CI runs on Linux with glibc.
glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's malloc only",
)

_FREED = """
import sys
from marketpipe.run.process import keep_freed_memory

def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

tuned = keep_freed_memory() if sys.argv[1] == "tuned" else False
block = bytearray(48 * 2**20)  # zeroed: its pages are resident
before = resident()
del block
print(tuned, (before - resident()) // 2**20)
"""


def _freed(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _FREED, mode],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env,
    )
    tuned, given_back = out.stdout.split()
    return tuned, int(given_back)


@glibc_only
def test_a_freed_buffer_stays_with_the_process_for_the_next_one() -> None:
    assert _freed("plain") == ("False", 48)  # glibc by default: mmap'd, given back on free
    assert _freed("tuned") == ("True", 0)


@glibc_only
def test_the_users_own_malloc_setting_wins() -> None:
    assert _freed("tuned", MALLOC_TRIM_THRESHOLD_="65536") == ("False", 48)


_AFTER_MP = """
import atexit, os, sys

def after() -> None:
    {after}

atexit.register(after)
sys.argv = ["mp", "--version"]
from marketpipe.cli.main import main

main()
"""


def _after_mp(after: str, unset: tuple[str, ...], **env: str) -> str:
    """What ``after`` (one line, run as an mp command ends) prints, in an mp process whose
    environment has no variable starting with ``unset`` but ``env``."""
    out = subprocess.run(
        [sys.executable, "-c", _AFTER_MP.format(after=after)],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(unset)} | env,
    )
    return out.stdout.split()[-1]


def _threads(**env: str) -> int:
    # numpy loaded as a command loads it, after mp started
    after = 'import numpy; print(len(os.listdir("/proc/self/task")))'
    return int(_after_mp(after, ("OPENBLAS_",), **env))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads counted in /proc")
def test_an_mp_process_starts_no_blas_threads_unless_the_user_asks() -> None:
    """OpenBLAS's threads each spun about 0.1 s of CPU when numpy was imported (perf of
    bench_flatfiles); mp asks for none before numpy loads, a user's own setting is kept."""
    assert _threads() == 1
    assert _threads(OPENBLAS_NUM_THREADS="2") == 2


_HTTPX = """
import atexit, sys

def loaded() -> None:
    import httpx  # as a provider imports it, after mp started

    assert httpx.AsyncClient is not None
    print(sorted(m for m in ("httpx", "httpx._main", "pygments") if m in sys.modules))

atexit.register(loaded)
sys.argv = ["mp", "--version"]
from marketpipe.cli.main import main

main()
"""


def _pool(**env: str) -> str:
    after = "import pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    return _after_mp(after, ("ARROW_", "MALLOC_"), **env)


@glibc_only
def test_an_mp_process_takes_arrows_buffers_from_its_tuned_heap() -> None:
    """Arrow's mimalloc gave freed pages back and faulted them in again, zeroed (4.5% of
    bench_flatfiles' samples); mp's Arrow allocates from the heap it keeps, unless the user
    chose a pool, or set glibc's malloc their own way."""
    assert _pool() == "system"
    assert _pool(ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"
    assert _pool(MALLOC_TRIM_THRESHOLD_="65536") == "mimalloc"


def test_an_mp_process_imports_httpx_without_its_command_line() -> None:
    """httpx's own CLI (click, rich, pygments' lexers: 30 ms a command) stays out of mp."""
    out = subprocess.run([sys.executable, "-c", _HTTPX], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['httpx']"


def test_every_mp_command_keeps_its_freed_memory_and_hands_the_gil_over_sooner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import marketpipe.cli.main as cli_main
    import marketpipe.run.process as process

    calls: list[str] = []
    monkeypatch.setattr(process, "keep_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(process, "arrow_from_heap", lambda: calls.append("arrow"))
    monkeypatch.setattr(sys, "argv", ["mp", "--version"])
    monkeypatch.setattr(process, "_tuned", False)  # put back as it was after the test
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # what mp sets, gone after the test
    before, collecting = sys.getswitchinterval(), gc.get_threshold()
    try:
        with pytest.raises(SystemExit) as stopped:
            cli_main.main()
        assert stopped.value.code == 0 and calls == ["kept", "arrow"]
        assert sys.getswitchinterval() == pytest.approx(0.001) != before
        assert gc.get_threshold()[0] == 10_000 != collecting[0]
    finally:
        sys.setswitchinterval(before)
        gc.set_threshold(*collecting)


def test_a_commands_job_leaves_what_it_loaded_out_of_the_collectors_passes(
    step_provider: object, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full collection walks every object the process holds, every thread stopped: in mp's
    # own (tuned) process, what is loaded when a job's units start is frozen out of it, and the
    # youngest objects are looked at after 10,000 allocations; a library call changes neither.
    import marketpipe.run.process as process

    def job(day: str) -> int:
        request = IngestRequest(provider="step", symbols=(Symbol("AAPL"),),
                                time_range=TimeRange(day, day), data_dir=data_dir)  # fmt: skip
        return asyncio.run(run_ingest(request)).bars

    monkeypatch.setattr(process, "_tuned", False)  # put back as they were after the test
    monkeypatch.setattr(process, "_settled", False)
    monkeypatch.setattr(process, "keep_freed_memory", lambda: True)  # malloc: tested above
    monkeypatch.setattr(process, "arrow_from_heap", lambda: None)  # Arrow's pool: likewise
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # what mp sets, gone after the test
    before, collecting = sys.getswitchinterval(), gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        assert job("2024-03-04") > 0
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == collecting  # a library call
        process.tune_for_jobs()
        assert job("2024-03-05") > 0
        frozen = gc.get_freeze_count()
        assert frozen > 50_000 and gc.get_threshold()[0] == 10_000
        assert job("2024-03-06") > 0
        assert gc.get_freeze_count() == frozen  # once a process: later jobs are collected
    finally:
        gc.unfreeze()  # back among the collector's objects: nothing left for other tests
        gc.set_threshold(*collecting)
        sys.setswitchinterval(before)
