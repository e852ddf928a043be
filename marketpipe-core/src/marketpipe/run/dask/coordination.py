"""What a job's workers share through the Dask scheduler: the provider's rate limit and the
job's stop flag.

The rate limit is a ``distributed.Semaphore`` on the scheduler with one lease per request in
the window.

A request takes a lease before it is sent and gives it back a window after its answer, so at
most ``requests_per_window`` requests of all workers together are in any window, whichever
worker sends them and however many workers join or leave (a static split of the limit among
the workers counted at the start cannot do that: see ``bench/bench_dask.py``). Waiting for a
lease is one round trip to the scheduler, woken by the release it waits for, not polling.

Leases of a worker that dies expire after ``distributed.scheduler.locks.lease-timeout``
(30 s by default), the only moment the limit can be overrun: by at most what that worker
had sent in its last window.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import time
from typing import Any

import attrs

from marketpipe.model.secrets import Secret


@attrs.frozen
class DaskWindows:
    """Picklable: travels to the workers in a task and builds each limit's window there."""

    #: Names the scheduler's semaphore: jobs of one provider and account on one cluster share
    #: its limit.
    provider: str
    #: The workers the job started with: each sends its share of a limit learned from 429s.
    workers: int = 1
    #: Which account the limit is of (:func:`account_tag`): two accounts' jobs do not share.
    account: str = ""

    def of_account(self, secrets: tuple[Secret, ...]) -> DaskWindows:
        """These windows, held apart for the account whose secret settings are ``secrets``
        (resolved on the worker, which holds them)."""
        return attrs.evolve(self, account=account_tag(secrets))

    def __call__(self, requests_per_window: int, window_seconds: float) -> DaskWindow:
        provider = re.sub(r"[^A-Za-z0-9_.-]", "_", self.provider)
        account = f"-{self.account}" if self.account else ""
        name = f"marketpipe-rate-{provider}{account}-{requests_per_window}-per-{window_seconds:g}s"
        from distributed import get_worker

        # One semaphore client a limit and scheduler in this worker, kept for its next jobs.
        key = (name, str(get_worker().scheduler.address))
        with _GUARD:
            window = _WINDOWS.get(key)
            if window is None:
                window = _WINDOWS[key] = DaskWindow(name, requests_per_window)
            window.workers = self.workers
            return window


def account_tag(secrets: tuple[Secret, ...]) -> str:
    """A short salted digest of an account's secret settings, to name its limit on the
    scheduler: equal for equal keys, telling nothing of them (48 bits of SHA-256)."""
    if not secrets:
        return ""
    digest = hashlib.sha256(b"marketpipe-rate-limit\0")
    for secret in secrets:
        digest.update(secret.get_secret_value().encode() + b"\0")
    return digest.hexdigest()[:12]


_WINDOWS: dict[tuple[str, str], DaskWindow] = {}
_GUARD = threading.Lock()


#: How often a worker sending requests looks whether another one was told to back off.
PAUSE_CHECK_SECONDS = 0.5


class DaskWindow:
    """One limit's leases, taken and given back on the worker's own event loop (made in a
    task, where the worker is known).

    A server's ``Retry-After`` holds back every worker, not only the one it answered: the
    pause's end (wall-clock time) is kept in the scheduler's metadata, which workers sending
    requests read at most every :data:`PAUSE_CHECK_SECONDS`. A limit learned from 429s without a
    hint travels the same way: each worker then sends at most its share of it (the learned
    limit split over the workers sending), and the semaphore still caps them all at the
    configured limit. (Metadata, not ``distributed.Variable``: reading a Variable nobody has
    set is a TimeoutError the scheduler logs with its traceback, a hundred a normal run.)
    """

    def __init__(self, name: str, leases: int) -> None:
        from distributed import Semaphore, get_client, get_worker

        loop: Any = get_worker().loop  # tornado's IOLoop over the worker's asyncio loop
        self._loop: asyncio.AbstractEventLoop = loop.asyncio_loop
        self._semaphore: Any = Semaphore(max_leases=leases, name=name)  # type: ignore[no-untyped-call]
        self._scheduler: Any = get_client().scheduler
        self._pause_key = ["marketpipe", name, "pause"]
        self._learned_key = ["marketpipe", name, "learned"]
        self._paused_until = 0.0  # time.time()
        self._learned: tuple[int, float] | None = None  # (limit, when: time.time())
        self.workers = 1
        self._checked = -PAUSE_CHECK_SECONDS

    async def _acquire(self) -> None:
        now = time.monotonic()
        if now - self._checked >= PAUSE_CHECK_SECONDS:
            self._checked = now
            with contextlib.suppress(Exception):  # no scheduler to ask
                until = await self._scheduler.get_metadata(keys=self._pause_key, default=None)
                if until is not None:
                    self._paused_until = max(self._paused_until, float(until))
            with contextlib.suppress(Exception):
                learned = await self._scheduler.get_metadata(keys=self._learned_key, default=None)
                if learned is not None:
                    limit, when = str(learned).split("@")
                    if self._learned is None or float(when) > self._learned[1]:
                        self._learned = (int(limit), float(when))
        wait = self._paused_until - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await self._semaphore.acquire()

    async def _publish_pause(self, until: float) -> None:
        with contextlib.suppress(Exception):
            await self._scheduler.set_metadata(keys=self._pause_key, value=until)

    def penalize(self, seconds: float) -> None:
        until = time.time() + seconds

        def publish() -> None:
            if until > self._paused_until:
                self._paused_until = until
                self._loop.create_task(self._publish_pause(until))

        self._loop.call_soon_threadsafe(publish)

    def learn(self, requests_per_window: int) -> None:
        when = time.time()  # this worker too takes up its share at its next request

        def publish() -> None:
            self._learned = (requests_per_window, when)
            self._loop.create_task(self._publish_learned(f"{requests_per_window}@{when}"))

        self._loop.call_soon_threadsafe(publish)

    async def _publish_learned(self, value: str) -> None:
        with contextlib.suppress(Exception):
            await self._scheduler.set_metadata(keys=self._learned_key, value=value)

    def learned(self) -> tuple[int, float] | None:
        """This worker's share of the last limit a worker learned (within ten minutes: a
        learning of an earlier job has had time to be raised again)."""
        learned = self._learned
        if learned is None or time.time() - learned[1] > 600:
            return None
        return max(1, learned[0] // self.workers), learned[1]

    async def _release(self) -> None:
        with contextlib.suppress(Exception):  # the scheduler gone: the lease went with it
            await self._semaphore.release()

    def take(self) -> None:
        asyncio.run_coroutine_threadsafe(self._acquire(), self._loop).result()

    async def async_take(self) -> None:
        # Cancelled half-way, a lease the scheduler granted is not refreshed and expires.
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._acquire(), self._loop))

    def give_back(self, after_seconds: float) -> None:
        def later() -> None:
            self._loop.call_later(after_seconds, lambda: self._loop.create_task(self._release()))

        self._loop.call_soon_threadsafe(later)


@attrs.frozen
class DaskStopFlag:
    """Set by the client when the job is stopped (Ctrl-C); a worker fetching one of the job's
    units looks at it while it waits (a ``distributed.Event`` on the scheduler)."""

    job_id: str

    @property
    def name(self) -> str:
        return f"marketpipe-stop-{self.job_id}"

    def is_set(self) -> bool:
        from distributed import Event

        try:
            return bool(Event(self.name).is_set())  # type: ignore[no-untyped-call]
        except Exception:  # no scheduler to ask: the unit goes on, the client decides
            return False
