"""What a process that runs jobs sets for itself (``mp`` does it first thing:
:func:`tune_for_jobs`): how glibc's malloc treats its large buffers (a unit's columns, a
decoded chunk), how soon a thread waiting for the GIL gets it, and when the garbage collector
runs.

By default glibc serves a block over 128 KiB from ``mmap`` until the first frees raise that
threshold, and gives freed memory at the top of a heap back to the system: each such buffer
then costs fresh pages, faulted in and zeroed, the next time. A whole market's day allocates
and frees a unit's columns hundreds of times: over bench_flatfiles' three days the kernel took
1.3 to 1.5 s of CPU (a fifth of the job), 0.6 to 0.9 s once freed memory is kept for reuse.

Hand-written with ``ctypes``: ``mallopt`` is the interface and there is no library for one
call. Elsewhere than glibc (musl, macOS) these are no-ops, and a ``MALLOC_*_`` variable the
user set wins.

Arrow's buffers (parsed columns, encoded pages) come from the same heap: a tuned process
sets Arrow's default pool to the system allocator (``ARROW_DEFAULT_MEMORY_POOL=system``, read
when pyarrow loads). Arrow's own mimalloc gives freed pages back to the system after a few
milliseconds and faults them in again, zeroed: over bench_flatfiles' three days that page
zeroing was 4.5% of the job's ``perf`` samples, and with the system pool the job took 2% to 8%
less CPU and 3% to 6% less time (runs in turns, same RSS). A user's own setting wins.

A job's threads (a CSV reader calling back into Python for its input, two units' commits, the
event loop) pass the GIL back and forth all the time: one waiting for it asks after 1 ms rather
than Python's 5 (a whole market's 3 days in bench_flatfiles ran about 5% faster).

The cyclic garbage collector holds the GIL while it runs, and a full collection walks every
object the process holds: the modules and plugins a command imported, and the job's plan
(about 90,000 objects for a small job), each time. Over bench_flatfiles' three days it took
0.2 s, three full collections of 25 to 50 ms among them, every thread stopped. A tuned process
collects its youngest objects after 10,000 allocations rather than 700 (the same objects looked
at, in fewer passes), and when a job's units are about to run (:func:`settle_for_units`) what
it loaded so far is frozen out of later collections: 0.04 s over the same three days. That
is done once a process: the jobs after the first (``mp update``'s series) leave theirs to the
collector as usual.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from typing import Any

#: Seconds a thread runs before one waiting for the GIL asks for it (Python's default is 5 ms).
SWITCH_INTERVAL = 0.001
#: Allocations of objects the collector tracks before it looks at the youngest (Python: 700).
YOUNG_THRESHOLD = 10_000

_tuned = False
_settled = False

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations up to this size come from the heap (glibc's own upper bound for its moving one).
MMAP_THRESHOLD = 64 * 2**20
#: Freed memory at the top of a heap is kept up to this much for the next allocations.
TRIM_THRESHOLD = 256 * 2**20


def _mallopt() -> Any | None:
    """The process's own ``mallopt`` (its C library is loaded already): not through
    ``ctypes.util.find_library``, which runs ``ldconfig`` in a subprocess at every start."""
    if not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None:
        return None  # not glibc (musl has no such setting): nothing to set
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, ValueError):
        return None


def serve_large_from_heap() -> bool:
    """Serve allocations up to :data:`MMAP_THRESHOLD` from the heap; whether it was set."""
    mallopt = _mallopt()
    if mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep up to :data:`TRIM_THRESHOLD` of freed
    memory for reuse (a process's peak memory then stays with it until it ends: right for a
    command, whose memory is bounded by the units in flight); whether both were set."""
    mallopt = _mallopt()
    if mallopt is None or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    large = serve_large_from_heap()
    return large and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)


def tune_for_jobs() -> None:
    """This module's settings, for the whole process: for a command (``mp``), not for a
    library call inside someone else's program. ``mp`` calls it before anything loads numpy:
    numpy's OpenBLAS then starts no threads of its own (it starts one a core, and each spins
    about 0.1 s of CPU waiting for work; ``mp`` does no linear algebra). A user's own
    ``OPENBLAS_NUM_THREADS`` is kept."""
    global _tuned
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if keep_freed_memory():
        arrow_from_heap()
    sys.setswitchinterval(SWITCH_INTERVAL)
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    _tuned = True


def arrow_from_heap() -> None:
    """Arrow's buffers from the (tuned) heap, unless the user chose Arrow's pool."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # read when pyarrow loads
    if "pyarrow" in sys.modules:  # loaded already (a test, a library's caller): set it now
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


def settle_for_units() -> None:
    """In a tuned process, when its first job's units are about to run: what it holds now
    (modules, plugins, the calendar) lives as long as it does, so later collections leave it
    out (``gc.freeze``). Elsewhere (a library call), or once done, nothing."""
    global _settled
    if _tuned and not _settled:
        gc.freeze()
        _settled = True
