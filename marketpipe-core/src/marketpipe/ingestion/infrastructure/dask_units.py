"""Units of a job on a Dask cluster (``distributed``): connect (or start a local cluster), run
each unit as a task on some worker, and release what the workers hold for the job at the end.

A task is :func:`marketpipe.ingestion.application.remote_unit.run_unit` with a
:class:`~marketpipe.ingestion.application.remote_unit.UnitTask`; its bars go from the provider to
the dataset's storage on the worker and never travel through the scheduler; only the outcome (a
few numbers a partition) comes back.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

from marketpipe.errors import InvalidInputError
from marketpipe.executors import ExecutorChoice
from marketpipe.ingestion.application.remote_unit import UnitDone, UnitTask, close_job, run_unit

#: How long to try to reach the scheduler before saying it cannot be reached.
CONNECT_SECONDS = 10


class DaskUnits:
    """Runs units on the cluster of ``choice`` (use ``async with``)."""

    def __init__(self, choice: ExecutorChoice) -> None:
        self.choice = choice
        self._client: Any = None
        self._cluster: Any = None
        self._jobs: set[str] = set()
        self.slots = 1

    async def __aenter__(self) -> DaskUnits:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise InvalidInputError(
                '--executor dask needs Dask: pip install "marketpipe-core[dask]"'
            ) from None
        where = self.choice.scheduler
        try:
            if where is None:
                self._cluster = await LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=max(1, os.cpu_count() or 1),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    asynchronous=True,
                )
                where = self._cluster.scheduler_address
            self._client = await Client(  # type: ignore[no-untyped-call]
                where, asynchronous=True, timeout=CONNECT_SECONDS
            )
        except (OSError, TimeoutError) as exc:
            await self._shutdown()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInputError(
                f"cannot reach the Dask scheduler at {where}: {reason[:200]}"
            ) from None
        workers = self._client.scheduler_info().get("workers", {})
        self.slots = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        return self

    async def run(self, task: UnitTask) -> UnitDone:
        """Run one unit on a worker; its errors come back as raised there."""
        self._jobs.add(task.context.job_id)
        future = self._client.submit(
            run_unit, task, pure=False, key=f"unit-{task.context.job_id}-{uuid.uuid4().hex}"
        )
        done: UnitDone = await future
        return done

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._client is not None:
            for job_id in sorted(self._jobs):
                with contextlib.suppress(Exception):  # a worker gone: its state went with it
                    await self._client.run(close_job, job_id)
            await self._client.close()
            self._client = None
        if self._cluster is not None:
            await self._cluster.close()
            self._cluster = None
