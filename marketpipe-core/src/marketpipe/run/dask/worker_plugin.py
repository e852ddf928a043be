"""What MarketPipe sets on every worker of a Dask cluster it runs on (imported only once
``distributed`` is known to be installed).

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's
moving threshold for serving large allocations from ``mmap``: every buffer over 128 KiB then
costs an ``mmap``, zeroed pages faulted in, and a ``munmap``. Decoding an IEX capture allocates
buffers of megabytes per chunk, and ran 2.5 times slower on a worker than in a plain process
(1.89 s against 0.75 s for a 528 MB capture). Serving allocations under 64 MiB from the heap
again (``M_MMAP_THRESHOLD``) brings it back to 0.70 s; Dask's trimming of freed heap memory is
kept. Hand-written with ``ctypes`` because ``mallopt`` is the interface; there is no library
for one call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from distributed import WorkerPlugin

_M_MMAP_THRESHOLD = -3
#: Allocations up to this size come from the heap (glibc's own upper bound for its moving one).
MMAP_THRESHOLD = 64 * 2**20


class LargeAllocations(WorkerPlugin):  # type: ignore[misc]
    """Serve large allocations from the heap again on each worker (glibc only; elsewhere a
    no-op)."""

    name = "marketpipe-large-allocations"
    idempotent = True

    def setup(self, worker: Any) -> None:
        path = ctypes.util.find_library("c")
        if path is None:
            return
        try:
            libc = ctypes.CDLL(path)
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        except (OSError, AttributeError):  # not glibc: nothing to set
            return
