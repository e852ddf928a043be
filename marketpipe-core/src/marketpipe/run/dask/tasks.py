"""A unit of work as a task for another process (a Dask worker): fetch, validate, quarantine
and commit there; the client records the result. A worker never opens the dataset's catalog or
job store: it writes bar (and quarantine) files to the dataset's storage and returns what it
committed; the client syncs its catalog from those files and records them in its job store.

The task carries names and public settings only: a worker builds the provider and the sink from
its own plugins, and resolves their secret settings (API keys, credentials) from its own
environment and config file, as the client did. Secrets never travel in a task. Each worker
keeps, per job, one provider (its requests run on one event loop of their own) and one sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import attrs
import pyarrow as pa

from marketpipe.fetch import metrics
from marketpipe.fetch.deadline import job_deadline
from marketpipe.fetch.rate_limiter import WindowFactory, shared_windows
from marketpipe.model.calendar import SessionWindow, nyse_calendar
from marketpipe.model.request import FetchRequest
from marketpipe.model.schema import assemble_bars
from marketpipe.model.values import Timeframe
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.registry import PreparedProvider, configure, prepare_provider
from marketpipe.plugins.sink import Sink
from marketpipe.run.actions import FetchActions
from marketpipe.run.dask.coordination import DaskWindows
from marketpipe.run.planning import WorkUnit
from marketpipe.run.unit_commit import UnitCommitted, UnitCommitter, UnitContext
from marketpipe.storage.catalog import in_memory


@attrs.frozen
class WorkerSetup:
    """What a worker needs to set a job up: names and public settings, never a secret."""

    provider: str
    #: The job's public provider settings (secret ones the worker resolves itself).
    provider_settings: Mapping[str, str]
    sink: str
    sink_settings: Mapping[str, str]
    #: Where the dataset is: a folder every worker reaches, or an ``s3://`` URL.
    dataset: Path | str
    replace_empty: bool = False
    #: Holds the provider's rate limits across the workers (``None``: each worker alone).
    rate_windows: WindowFactory | None = None
    #: What the job stores (``bars``, ``trades``, ``quotes``): which validators check it.
    kind: str = "bars"


@attrs.frozen
class UnitTask:
    setup: WorkerSetup
    context: UnitContext
    unit: WorkUnit
    #: The job's deadline (``time.time()`` seconds), which the worker's connectors keep to.
    deadline: float | None = None


@attrs.frozen
class ListTask:
    """List the symbols a provider has on some days (``--all-symbols``), on a worker: for IEX
    that is decoding each day, the work the cluster is for."""

    provider: str
    provider_settings: Mapping[str, str]
    windows: tuple[SessionWindow, ...]
    #: Holds the provider's rate limits across the workers, as for units.
    rate_windows: WindowFactory | None = None
    #: What the job will fetch (:meth:`IMarketDataProvider.expect`): an IEX tick job lists a
    #: day from the decode that keeps its ticks, not from a second one.
    timeframe: Timeframe = Timeframe.M1


@attrs.frozen
class ActionsTask:
    """Fetch corporate actions on a worker, under the provider's rate limits held across the
    workers (the client keeps them in the ledger)."""

    provider: str
    provider_settings: Mapping[str, str]
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date
    rate_windows: WindowFactory | None = None


@attrs.frozen
class Listed:
    symbols: list[str]
    notes: list[str]


class RemoteUnits(Protocol):
    """Runs units elsewhere (:class:`marketpipe.run.dask.client.DaskUnits`)."""

    #: Each worker's threads, in the order of ``run``'s lanes: as many units run at once.
    threads: list[int]

    async def run(self, task: UnitTask, lane: int | None = None) -> UnitDone:
        """Run one unit on a worker (the ``lane``-th, in a stable order, when given)."""

    async def list_symbols(
        self,
        provider: str,
        settings: Mapping[str, str],
        windows: Sequence[SessionWindow],
        timeframe: Timeframe,
    ) -> Listed:
        """The symbols of ``windows``, listed a day a task across the workers, for a job of
        ``timeframe``."""

    def actions_fetcher(self, provider: str, settings: Mapping[str, str]) -> FetchActions:
        """Fetches ``provider``'s corporate actions on a worker."""

    async def stop(self, job_id: str) -> None:
        """The job is stopping: its units still fetching end with :class:`UnitStopped`."""

    def rate_windows(self, provider: str) -> WindowFactory | None:
        """What holds ``provider``'s rate limits across the workers."""


class StopFlag(Protocol):
    """Whether the client stopped the job, asked from the worker."""

    def is_set(self) -> bool: ...


@attrs.frozen
class UnitDone:
    committed: UnitCommitted
    #: What the provider reported while fetching (truncated files, sequence gaps...).
    notes: list[str]
    #: What this worker's connectors counted since its last report, for the client's metrics.
    counted: metrics.Counted = attrs.field(factory=metrics.Counted)
    commit_seconds: float = 0.0


class UnitStopped(Exception):
    """The job was stopped while the unit was fetched: nothing of it was committed, it stays
    pending for a resume."""


class RemoteFetchError(Exception):
    """The provider failed to fetch the unit on the worker; ``original`` is its error, handled by
    the client as a local fetch failure is (a symbol's error isolated, a user error stops)."""

    def __init__(self, original: BaseException, counted: metrics.Counted | None = None) -> None:
        super().__init__(str(original))
        self.original = original
        self.counted = counted or metrics.Counted()

    def __reduce__(self) -> tuple[type, tuple[BaseException, metrics.Counted]]:
        return (type(self), (self.original, self.counted))


class WorkerSetupError(Exception):
    """This worker cannot set the job up (the provider or sink plugin is not installed there,
    or a secret is not set there): the unit fails with this message."""


class ClusterLostError(Exception):
    """The cluster can no longer run units (its scheduler is gone): the job stops at once, and
    the same command (or ``mp jobs resume``) finishes it once a cluster is back."""


class _WorkerJob:
    """One job's provider, event loop and sink in this worker process."""

    def __init__(self, setup: WorkerSetup) -> None:
        from marketpipe.plugins.host import get_plugin_host
        from marketpipe.plugins.settings import resolve_settings
        from marketpipe.storage.listed import build_sink
        from marketpipe.storage.sinks import get_sink_spec

        prepared = _prepare_provider(setup.provider, setup.provider_settings, setup.rate_windows)
        self.provider: IMarketDataProvider = prepared.provider
        self.spec = prepared.spec
        sink_spec = get_sink_spec(setup.sink)
        settings = resolve_settings(sink_spec, setup.sink_settings)
        # The client alone keeps the dataset's catalog and job store: this sink's catalog lives
        # in this process's memory, read from the files (see storage.catalog.in_memory).
        with in_memory():
            self.sink: Sink = build_sink(sink_spec, setup.dataset, settings.values)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.committer = UnitCommitter(
            sink=self.sink,
            validators=get_plugin_host().validators_for(setup.kind),
            spec=prepared.spec,
            calendar=nyse_calendar(),
            dataset=setup.dataset,
            replace_empty=setup.replace_empty,
        )

    def fetch(
        self, request: FetchRequest, stopped: StopFlag | None, deadline: float | None = None
    ) -> list[pa.RecordBatch]:
        """The provider's answer, or :class:`UnitStopped` as soon as the job is stopped."""
        if stopped is not None and stopped.is_set():
            raise UnitStopped()

        async def within_deadline() -> list[pa.RecordBatch]:
            with job_deadline(deadline):
                return await self.provider.fetch_async(request)

        future = asyncio.run_coroutine_threadsafe(within_deadline(), self.loop)
        while True:
            try:
                return future.result(timeout=STOP_POLL_SECONDS)
            except TimeoutError:
                if stopped is not None and stopped.is_set():
                    future.cancel()
                    raise UnitStopped() from None

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.provider.aclose(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.provider.close()
            self.sink.close()


_JOBS: dict[str, _WorkerJob] = {}
_GUARD = threading.Lock()
_UNITS_RUN = [0]
_DAYS_LISTED = [0]


def _prepare_provider(
    name: str, settings: Mapping[str, str], rate_windows: WindowFactory | None
) -> PreparedProvider:
    """The provider built from this worker's plugins, its rate limits held across the
    workers."""
    with contextlib.ExitStack() as sharing:
        if isinstance(rate_windows, DaskWindows):  # one limit per account, not per provider
            _, resolved = configure(name, settings)
            rate_windows = rate_windows.of_account(resolved.secrets())
        if rate_windows is not None:
            sharing.enter_context(shared_windows(rate_windows))
        return prepare_provider(name, settings)


@contextlib.contextmanager
def _set_up_here(what: str) -> Iterator[None]:
    """A plugin, a setting or a secret missing on this worker: :class:`WorkerSetupError`."""
    from marketpipe.model.errors import UserError

    try:
        yield
    except UserError as exc:
        raise WorkerSetupError(
            f"the worker on {socket.gethostname()} cannot {what}: {exc}; every worker needs "
            "the client's plugins installed and their secret settings in its own environment"
        ) from None


def _set_up(setup: WorkerSetup) -> _WorkerJob:
    with _set_up_here("run this job"):
        return _WorkerJob(setup)


#: How often a unit being fetched looks whether its job was stopped.
STOP_POLL_SECONDS = 0.5


def run_unit(task: UnitTask, stopped: StopFlag | None = None) -> UnitDone:
    """Fetch and commit one unit in this process (a Dask worker's task)."""
    with _GUARD:
        job = _JOBS.get(task.context.job_id)
        if job is None:
            metrics.count_for_client()
            job = _JOBS[task.context.job_id] = _set_up(task.setup)
    request = FetchRequest(
        symbols=task.unit.symbols,
        windows=task.unit.windows,
        timeframe=task.context.timeframe,
        session=task.context.session,
        settings=dict(task.setup.provider_settings),
    )
    try:
        table = assemble_bars(job.fetch(request, stopped, task.deadline), task.context.timeframe)
        days = [w.day for w in task.unit.windows]
        sources = job.provider.source_versions(task.context.timeframe, days)
    except UnitStopped:
        raise
    except Exception as exc:
        raise RemoteFetchError(exc, metrics.take_counted()) from None
    notes = job.provider.take_notes()
    started = time.perf_counter()
    committed = job.committer.commit(task.context, task.unit, table, sources)
    seconds = time.perf_counter() - started
    with _GUARD:
        _UNITS_RUN[0] += 1
    return UnitDone(committed, notes, metrics.take_counted(), seconds)


def list_symbols(task: ListTask) -> Listed:
    """A worker's task: the provider's symbols on ``task.windows``."""
    with _set_up_here("list symbols"):
        prepared = _prepare_provider(task.provider, task.provider_settings, task.rate_windows)
    try:
        prepared.provider.expect(task.timeframe)
        symbols = prepared.provider.list_symbols(task.windows)
        with _GUARD:
            _DAYS_LISTED[0] += len(task.windows)
        return Listed(symbols, prepared.provider.take_notes())
    finally:
        prepared.provider.close()


def fetch_actions(task: ActionsTask) -> pa.Table | None:
    """A worker's task: the provider's corporate actions of ``task.symbols``."""
    with _set_up_here("fetch corporate actions"):
        prepared = _prepare_provider(task.provider, task.provider_settings, task.rate_windows)
    try:
        return prepared.provider.fetch_actions(list(task.symbols), task.start, task.end)
    finally:
        prepared.provider.close()


def close_job(job_id: str) -> None:
    """Release what this worker holds for ``job_id`` (the client calls it on every worker)."""
    with _GUARD:
        job = _JOBS.pop(job_id, None)
    if job is not None:
        job.close()


def units_run() -> int:
    """How many units this process committed (for tests and diagnostics)."""
    return _UNITS_RUN[0]


def days_listed() -> int:
    """How many days' symbols this process listed (for tests and diagnostics)."""
    return _DAYS_LISTED[0]
