"""Units of a job on a Dask cluster (``distributed``): connect (or start a local cluster), run
each unit as a task on some worker, and release what the workers hold for the job at the end.

A task is :func:`marketpipe.run.dask.tasks.run_unit` with a
:class:`~marketpipe.run.dask.tasks.UnitTask`; its bars go from the provider to
the dataset's storage on the worker and never travel through the scheduler; only the outcome (a
few numbers a partition) comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from marketpipe.fetch import progress
from marketpipe.fetch.config import seconds_from_env
from marketpipe.fetch.rate_limiter import WindowFactory
from marketpipe.model.calendar import SessionWindow
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import Timeframe
from marketpipe.run.actions import FetchActions
from marketpipe.run.dask.coordination import DaskStopFlag, DaskWindows
from marketpipe.run.dask.tasks import (
    ActionsTask,
    ClusterLostError,
    Listed,
    ListTask,
    UnitDone,
    UnitTask,
    WorkerSetupError,
    close_job,
    fetch_actions,
    list_symbols,
    run_unit,
)
from marketpipe.run.executors import ExecutorChoice

#: How long to try to reach the scheduler (and its first worker), and to reach it again once
#: lost, before saying it cannot be reached; ``MARKETPIPE_DASK_CONNECT_SECONDS`` says otherwise.
CONNECT_SECONDS = 10.0
CONNECT_SECONDS_ENV = "MARKETPIPE_DASK_CONNECT_SECONDS"
#: How often a unit in flight checks that the client still has its scheduler.
WATCH_SECONDS = 1.0


async def _started(client: Any) -> Any:
    """``await client``, as a coroutine ``asyncio.wait_for`` can bound."""
    return await client


class DaskUnits:
    """Runs units on the cluster of ``choice`` (use ``async with``)."""

    def __init__(self, choice: ExecutorChoice) -> None:
        self.choice = choice
        self._client: Any = None
        self._cluster: Any = None
        #: Per job, the clearing of its stop flag, which every unit waits for before it starts.
        self._jobs: dict[str, asyncio.Future[Any]] = {}
        self._stopped: set[str] = set()
        #: The workers' addresses when the job connected, in order (the lanes' workers), and
        #: each one's threads.
        self._addresses: list[str] = []
        self.threads: list[int] = [1]

    async def __aenter__(self) -> DaskUnits:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise InvalidInputError(
                '--executor dask needs Dask: pip install "marketpipe-core[dask]"'
            ) from None
        where = self.choice.scheduler
        seconds = seconds_from_env(CONNECT_SECONDS_ENV, CONNECT_SECONDS)
        # distributed logs the loss of its scheduler at ERROR (its loggers have their own
        # levels); the job says it in its own one line.
        for name in list(logging.root.manager.loggerDict):
            if name == "distributed" or name.startswith("distributed."):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            if where is None:
                self._cluster = await LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=max(1, os.cpu_count() or 1),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",  # any free port: 8787 may be taken
                    asynchronous=True,
                )
                where = self._cluster.scheduler_address
            # Bounded here as well: a port that accepts the connection but speaks another
            # protocol (HTTP, say) never finishes Dask's handshake, and the client's own
            # timeout does not cover that wait.
            client = Client(where, asynchronous=True, timeout=seconds)  # type: ignore[no-untyped-call]
            try:
                self._client = await asyncio.wait_for(_started(client), seconds + 2)
            except BaseException:  # timed out, or the job was stopped while connecting
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(client.close(), 5)  # type: ignore[no-untyped-call]
                raise
        except TimeoutError:
            await self._shutdown()
            raise InvalidInputError(
                f"cannot reach the Dask scheduler at {where}: nothing there answered as a Dask "
                f"scheduler within {seconds:g} s (is it the scheduler's port?)"
            ) from None
        except OSError as exc:
            await self._shutdown()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInputError(
                f"cannot reach the Dask scheduler at {where}: {reason[:200]}"
            ) from None
        try:
            await self._client.wait_for_workers(1, timeout=seconds)
        except (OSError, TimeoutError):
            await self._shutdown()
            raise InvalidInputError(
                f"the Dask scheduler at {where} has no workers: start some with dask worker {where}"
            ) from None
        from marketpipe.run.dask.worker_plugin import LargeAllocations

        await self._client.register_plugin(LargeAllocations())
        # Asked of the scheduler: an asynchronous client's ``scheduler_info()`` is a cache that
        # loses its workers at its first refresh (two seconds in), which sent every later unit
        # of a day file anywhere, to be read again there.
        identity = await self._client.scheduler.identity(n_workers=-1)
        workers = identity.get("workers", {})
        self._addresses = sorted(workers)
        self.threads = [max(1, int(workers[a].get("nthreads", 1))) for a in self._addresses] or [1]
        return self

    @property
    def workers(self) -> int:
        return len(self.threads)

    def rate_windows(self, provider: str) -> WindowFactory:
        """Holds ``provider``'s rate limits on the scheduler for all workers together."""
        return DaskWindows(provider, self.workers)

    async def run(self, task: UnitTask, lane: int | None = None) -> UnitDone:
        """Run one unit on a worker; its errors come back as raised there. ``lane``: on the
        ``lane``-th worker (workers in address order), where the units of one day go so that
        the day's file is read once for all of them (:mod:`marketpipe.run.lanes`); another
        worker takes them if that one is gone."""
        from distributed import Event

        job_id = task.context.job_id
        flag = DaskStopFlag(job_id)
        try:
            cleared = self._jobs.get(job_id)
            if cleared is None:
                # A resumed job's flag may still be set from the run Ctrl-C stopped: cleared
                # once, before any of the job's units (all of them wait for it) can see it.
                stop = Event(flag.name, client=self._client)  # type: ignore[no-untyped-call]
                cleared = self._jobs[job_id] = asyncio.ensure_future(stop.clear())  # type: ignore[no-untyped-call]
            await cleared
            where = self._worker_at(lane) if lane is not None else None
            future = self._client.submit(
                run_unit,
                task,
                flag,
                pure=False,
                key=f"unit-{job_id}-{uuid.uuid4().hex}",
                # A preference: a lost worker's units run elsewhere.
                **({"workers": where, "allow_other_workers": True} if where else {}),
            )
        except Exception as exc:  # the client closed: the scheduler was lost before
            raise self._lost(exc) from None
        result: UnitDone = await self._outcome(future)
        return result

    def _worker_at(self, lane: int) -> list[str] | None:
        addresses = self._addresses
        return [addresses[lane % len(addresses)]] if addresses else None

    def actions_fetcher(self, provider: str, settings: Mapping[str, str]) -> FetchActions:
        """Corporate actions fetched on a worker, under the cluster's shared rate limit: a
        request from here would take no lease and could push the workers over it."""

        async def fetch(symbols: list[str], start: dt.date, end: dt.date) -> pa.Table | None:
            task = ActionsTask(
                provider, dict(settings), tuple(symbols), start, end, self.rate_windows(provider)
            )
            try:
                future = self._client.submit(fetch_actions, task, pure=False)
            except Exception as exc:
                raise self._lost(exc) from None
            result: pa.Table | None = await self._outcome(future)
            return result

        return fetch

    async def list_symbols(
        self,
        provider: str,
        settings: Mapping[str, str],
        windows: Sequence[SessionWindow],
        timeframe: Timeframe,
    ) -> Listed:
        """The symbols of ``windows``: one task a day, spread over the workers."""
        try:
            futures = [
                self._client.submit(
                    list_symbols,
                    ListTask(
                        provider, dict(settings), (w,), self.rate_windows(provider), timeframe
                    ),
                    pure=False,
                )
                for w in windows
            ]
        except Exception as exc:
            raise self._lost(exc) from None
        task = progress.task("list symbols (days)", len(futures), unit="days")
        symbols: set[str] = set()
        notes: list[str] = []
        done = 0

        async def one(future: Any) -> None:
            nonlocal done
            listed: Listed = await self._outcome(future)
            symbols.update(listed.symbols)
            notes.extend(n for n in listed.notes if n not in notes)
            done += 1
            task.update(done)

        try:
            await asyncio.gather(*(one(f) for f in futures))
        except WorkerSetupError as exc:  # a worker without the plugin or a secret: one line
            raise InvalidInputError(str(exc)) from None
        finally:
            task.close()
            pending = [f for f in futures if not f.done()]
            if pending:  # one day failed: the others are not needed any more
                with contextlib.suppress(Exception):
                    await self._client.cancel(pending)
        return Listed(sorted(symbols), notes)

    async def _outcome(self, future: Any) -> Any:
        """The task's result (its error raised here), or :class:`ClusterLostError`."""
        waiting = asyncio.ensure_future(future.result())
        try:
            while True:
                # A future of a client whose scheduler is gone never resolves: watch the client.
                done, _ = await asyncio.wait({waiting}, timeout=WATCH_SECONDS)
                if done:
                    return waiting.result()
                if self._client.status in ("closing", "closed"):
                    raise self._lost(None)
        except asyncio.CancelledError:
            task_now = asyncio.current_task()
            if task_now is not None and task_now.cancelling():
                raise  # this job is being stopped: not the cluster's doing
            raise self._lost(None) from None
        finally:
            waiting.cancel()

    async def stop(self, job_id: str) -> None:
        """Tell the workers to drop the job's fetches (its units end with ``UnitStopped``)."""
        from distributed import Event

        if job_id in self._stopped:
            return
        self._stopped.add(job_id)
        with contextlib.suppress(Exception):  # no scheduler: its units end as it went
            stop = Event(DaskStopFlag(job_id).name, client=self._client)  # type: ignore[no-untyped-call]
            await stop.set()  # type: ignore[no-untyped-call]

    def _lost(self, exc: BaseException | None) -> ClusterLostError:
        where = self.choice.scheduler or "the local cluster"
        why = f": {str(exc).splitlines()[0][:200]}" if exc is not None and str(exc) else ""
        return ClusterLostError(f"lost the Dask scheduler at {where}{why}; resume to finish")

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
