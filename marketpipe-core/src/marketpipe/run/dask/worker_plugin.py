"""What MarketPipe sets on every worker of a Dask cluster it runs on (imported only once
``distributed`` is known to be installed).

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's
moving threshold for serving large allocations from ``mmap``: every buffer over 128 KiB then
costs an ``mmap``, zeroed pages faulted in, and a ``munmap``. Decoding an IEX capture allocates
buffers of megabytes per chunk, and ran 2.5 times slower on a worker than in a plain process
(1.89 s against 0.75 s for a 528 MB capture). Serving allocations under 64 MiB from the heap
again (``M_MMAP_THRESHOLD``) brings it back to 0.70 s; Dask's trimming of freed heap memory is
kept (:mod:`marketpipe.run.process`).

Arrow's buffers come from that heap too, as in ``mp`` itself (Arrow's mimalloc faulted freed
pages in again, zeroed): a whole market's 3 days on one worker of 2 threads
(bench_flatfiles) took 6.6 s of CPU against 7.0 s, 4.65 s against 5.19 s. A worker's own
``ARROW_DEFAULT_MEMORY_POOL`` wins.
"""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

from marketpipe.run.process import arrow_from_heap, serve_large_from_heap


class LargeAllocations(WorkerPlugin):  # type: ignore[misc]
    """Serve large allocations, Arrow's among them, from the heap again on each worker (glibc
    only; elsewhere a no-op)."""

    name = "marketpipe-large-allocations"
    idempotent = True

    def setup(self, worker: Any) -> None:
        if serve_large_from_heap():
            arrow_from_heap()
