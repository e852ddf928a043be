"""``RateLimiter``: at most N requests in any window, shared by every thread and task of a job,
and by every process of a job on a cluster (:func:`shared_windows`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Protocol

import attrs

from marketpipe.fetch import metrics


class SharedWindow(Protocol):
    """One limit held by every process of a job: a lease taken before each request and given
    back a window after its answer, so at most ``requests_per_window`` leases, and requests, are
    out in any window across all of them (a Dask semaphore on the scheduler)."""

    def take(self) -> None: ...

    async def async_take(self) -> None: ...

    def give_back(self, after_seconds: float) -> None: ...

    def penalize(self, seconds: float) -> None:
        """The server said to wait ``seconds``: every process holds back that long."""


#: Builds the shared window of a limit: ``(requests_per_window, window_seconds)``.
WindowFactory = Callable[[int, float], SharedWindow]
_SHARING: ContextVar[WindowFactory | None] = ContextVar("marketpipe_rate_sharing", default=None)


@contextlib.contextmanager
def shared_windows(factory: WindowFactory) -> Iterator[None]:
    """Every :class:`RateLimiter` made inside this block (a provider being built on a cluster's
    worker) also holds its limit in the window ``factory`` gives, shared with the other
    workers: the provider's code does not change for it."""
    token = _SHARING.set(factory)
    try:
        yield
    finally:
        _SHARING.reset(token)


@attrs.define
class Slot:
    """One request's place in the window: when it may be sent, and a way to say it was answered."""

    ticket: int
    wait: float
    _limiter: RateLimiter

    def done(self) -> None:
        """The answer arrived: from now on the window counts this request from this moment,
        which is never earlier than when the server saw it."""
        self._limiter._settle(self.ticket)


class RateLimiter:
    """A sliding-window limiter that hands out send times in order.

    Each acquisition reserves the earliest moment at which sending keeps at most
    ``requests_per_window`` requests in any ``window_seconds``, then waits for it. Reservations are
    made under a lock, so threads and asyncio tasks sharing one limiter never exceed the limit
    together. A request that is answered (``Slot.done``) counts from its answer, which is never
    earlier than its arrival at the server, so a request held up on the way cannot make the next
    window's requests arrive too early; a small margin absorbs the rest of the network's jitter.
    ``penalize`` holds everyone back after the server said to wait (``Retry-After``).
    """

    def __init__(
        self,
        requests_per_window: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_window < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs at least one request per positive window")
        self.requests_per_window = requests_per_window
        self.window_seconds = window_seconds
        self._margin = max(0.2, window_seconds * 0.02)
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: deque[list[float]] = deque()  # [ticket, counted-from time], in send order
        self._tickets = itertools.count()
        self._last = 0.0
        self._blocked_until = 0.0
        self.waited_seconds = 0.0
        self.waits = 0
        sharing = _SHARING.get()
        self._shared = sharing(requests_per_window, window_seconds) if sharing else None

    def _reserve(self) -> Slot:
        with self._lock:
            now = self._clock()
            at = max(now, self._blocked_until, self._last)
            if len(self._sent) >= self.requests_per_window:
                at = max(at, self._sent.popleft()[1] + self.window_seconds + self._margin)
            ticket = next(self._tickets)
            self._sent.append([ticket, at])
            self._last = at
            wait = at - now
            if wait > 0:
                self.waits += 1
                self.waited_seconds += wait
                metrics.observe_wait(wait)
            return Slot(ticket, wait, self)

    def _settle(self, ticket: int) -> None:
        if self._shared is not None:
            self._shared.give_back(self.window_seconds + self._margin)
        with self._lock:
            now = self._clock()
            for entry in self._sent:
                if entry[0] == ticket:
                    entry[1] = max(entry[1], now)
                    return

    def _waited_shared(self, slot: Slot, started: float) -> Slot:
        waited = time.monotonic() - started
        if waited > 0.001:
            with self._lock:
                self.waits += slot.wait <= 0
                self.waited_seconds += waited
            metrics.observe_wait(waited)
            slot.wait += waited
        return slot

    def acquire_slot(self) -> Slot:
        """Wait (blocking) for a send slot; call ``done()`` on it when the answer arrives."""
        slot = self._reserve()
        if slot.wait > 0:
            time.sleep(slot.wait)
        if self._shared is not None:
            started = time.monotonic()
            self._shared.take()
            return self._waited_shared(slot, started)
        return slot

    async def async_acquire_slot(self) -> Slot:
        """Wait (without blocking the event loop) for a send slot."""
        slot = self._reserve()
        if slot.wait > 0:
            await asyncio.sleep(slot.wait)
        if self._shared is not None:
            started = time.monotonic()
            await self._shared.async_take()
            return self._waited_shared(slot, started)
        return slot

    def acquire(self) -> float:
        """Wait (blocking) for a send slot; return the seconds waited."""
        return self.acquire_slot().wait

    async def async_acquire(self) -> float:
        """Wait (without blocking the event loop) for a send slot; return the seconds waited."""
        return (await self.async_acquire_slot()).wait

    def penalize(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the server asked us to back off), nor do the other
        processes sharing this limit."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
        if self._shared is not None:
            self._shared.penalize(seconds)
