"""Units of day files spread over a cluster's workers a whole day at a time.

A provider with ``day_files`` reads a session day's one file once for every unit of that day,
so a day's units must all run on one worker: a unit that runs elsewhere reads the file again
from its start. Sending every unit of a day to one worker is not enough: with the job's slots
(the cluster's threads) filled in plan order, a worker was sent more units of its day than it
has threads while another had none, and Dask's work stealing moved the waiting ones to the idle
worker, which read the day again: a 3-day whole-market job on 2 workers read 6 files
(bench_flatfiles --workers 2x1). Here each worker is a lane that takes the next day whole when
it has handed out the units of its current one, and never holds more units than its threads, so
none waits where another worker could take it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from marketpipe.run.planning import WorkUnit


def by_day(units: Sequence[WorkUnit]) -> deque[list[WorkUnit]]:
    """``units`` grouped by their first day, days and units in plan order."""
    days: dict[dt.date, list[WorkUnit]] = {}
    for unit in units:
        days.setdefault(min(w.day for w in unit.windows), []).append(unit)
    return deque(days.values())


async def run_in_lanes(
    units: Sequence[WorkUnit],
    threads: Sequence[int],
    run: Callable[[WorkUnit, int | None], Awaitable[None]],
) -> None:
    """Run every unit as ``run(unit, lane)``: a lane a worker, each taking the next day whole
    and keeping at most its worker's ``threads`` of its units running."""
    days = by_day(units)

    async def lane(number: int) -> None:
        free = asyncio.Semaphore(max(1, threads[number]))
        running: list[asyncio.Task[None]] = []

        async def one(unit: WorkUnit) -> None:
            try:
                await run(unit, number)
            finally:
                free.release()

        while days:
            for unit in days.popleft():
                await free.acquire()
                running.append(asyncio.ensure_future(one(unit)))
        await asyncio.gather(*running)

    await asyncio.gather(*(lane(n) for n in range(len(threads))))


async def run_units(
    units: Sequence[WorkUnit],
    lanes: Sequence[int] | None,
    run: Callable[[WorkUnit, int | None], Awaitable[None]],
) -> None:
    """Every unit, in lanes of those threads when ``lanes`` are given (a cluster's workers,
    for a provider of day files), else all at once (``run`` bounds how many run)."""
    if lanes is None:
        await asyncio.gather(*(run(u, None) for u in units))
    else:
        await run_in_lanes(units, lanes, run)
