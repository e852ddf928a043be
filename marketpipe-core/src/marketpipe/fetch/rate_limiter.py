"""``RateLimiter``: at most N requests in any window, shared by every thread and task of a job,
and by every process of a job on a cluster (:func:`shared_windows`). A server that answers 429
without saying when to come back teaches it a lower limit (:meth:`RateLimiter.slow_down`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
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

    def learn(self, requests_per_window: int) -> None:
        """A process learned the server accepts only ``requests_per_window``: every process
        takes up its share of it when it next sends."""

    def learned(self) -> tuple[int, float] | None:
        """This process's share of the last limit a process learned, and when it was learned
        (``time.time()``); each learning is taken up once, the limiter raises it by itself."""


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


#: Bare 429s teach a limit only when they recur at one count: a burst is evidence when it is
#: the third in a row (no request accepted between them) at the same count of requests the
#: server accepted in the window, within one window; random faults almost never do.
_STREAK = 3
#: A raise multiplies the limit by this (at least one more request), after ``_quiet_windows``
#: windows without a bare 429; a raise that meets one waits twice as long next time, up to
#: this many windows: a server that raised its limit is found within minutes.
_RAISE = 1.5
_MOST_QUIET_WINDOWS = 8


@attrs.define
class Slot:
    """One request's place in the window: when it may be sent, and a way to say it was answered."""

    ticket: int
    wait: float
    _limiter: RateLimiter

    def done(self, rejected: bool = False, hinted: bool = False) -> int | None:
        """The answer arrived: from now on the window counts this request from this moment,
        which is never earlier than when the server saw it. ``rejected``: it was a 429, which
        the server did not count; without a hint (``hinted``) it teaches a lower limit, which
        is returned when this answer lowered it."""
        return self._limiter._settle(self.ticket, rejected, hinted)


class RateLimiter:
    """A sliding-window limiter that hands out send times in order.

    Each acquisition reserves the earliest moment at which sending keeps at most
    ``requests_per_window`` requests in any ``window_seconds``, then waits for it. Reservations are
    made under a lock, so threads and asyncio tasks sharing one limiter never exceed the limit
    together. A request that is answered (``Slot.done``) counts from its answer, which is never
    earlier than its arrival at the server, so a request held up on the way cannot make the next
    window's requests arrive too early; a small margin absorbs the rest of the network's jitter.
    ``penalize`` holds everyone back after the server said to wait (``Retry-After``).

    A 429 that says nothing (a gateway, a key shared with others) may mean the server's limit
    is below ours, or nothing at all (a gateway's hiccup, a fault). The limiter lowers the pace
    only on sustained evidence: three bursts of bare 429s in a row within one window, nothing
    accepted between them, each at the same count of requests the server accepted in the
    window, below the limiter's own limit. Then it takes that count as the limit and holds every request until
    the window has room, so the rejected ones are sent
    again only when they can pass. Any other burst is taken as a blip: nothing is learned and
    only the rejected request waits (its retry's backoff); random faults, which meet the server
    at random counts, mostly below what it let through before, never collapse the pace. After a quiet window it raises the limit by half
    (at least one); a raise that meets a steady 429 doubles the quiet spell before the next
    (up to eight windows), so the limiter keeps probing upward and finds a server that raised
    its limit. The 429s of one burst (requests already sent when the first came back) teach
    once.
    """

    def __init__(
        self,
        requests_per_window: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_window < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs at least one request per positive window")
        #: The limit configured; ``limit`` is the one in force (lower after bare 429s).
        self.requests_per_window = requests_per_window
        self.limit = requests_per_window
        self.window_seconds = window_seconds
        self._margin = max(0.2, window_seconds * 0.02)
        self._clock = clock
        self._lock = threading.Lock()
        # [ticket, counted-from time, answered], in send order
        self._sent: deque[list[float]] = deque()
        self._tickets = itertools.count()
        self._issued = 0
        self._last = 0.0
        self._blocked_until = 0.0
        self.waited_seconds = 0.0
        self.waits = 0
        #: 429s without a hint that lowered the limit (one a burst), and all the bare 429s.
        self.slowdowns = 0
        self.bare_rejections = 0
        self._burst_end = 0  # tickets below it were sent before the last lowering
        self._raise_at = math.inf
        self._quiet_windows = 1
        self._raised_at = -math.inf
        self._learned_at = 0.0  # when the last learning taken up from the shared window was
        #: Requests accepted so far, and the current streak of bursts of bare 429s with none
        #: accepted between them: ``(length, accepted then, count in the window, first at)``.
        self._accepted = 0
        self._streak = (0, -1, -1, 0.0)
        sharing = _SHARING.get()
        self._shared = sharing(requests_per_window, window_seconds) if sharing else None

    def _adopt_learned(self, now: float) -> None:
        """Take up a lower limit another process of the job learned (under the lock)."""
        learned = self._shared.learned() if self._shared is not None else None
        if learned is None or learned[1] <= self._learned_at:
            return
        self._learned_at = learned[1]
        if learned[0] < self.limit:
            self.limit = learned[0]
            self._burst_end = self._issued
            self._raise_at = now + self._quiet_windows * self.window_seconds

    def _reserve(self) -> Slot:
        with self._lock:
            now = self._clock()
            self._adopt_learned(now)
            if now >= self._raise_at and self.limit < self.requests_per_window:
                raised = max(self.limit + 1, int(self.limit * _RAISE))
                self.limit = min(self.requests_per_window, raised)
                self._raised_at = now
                self._raise_at = now + self._quiet_windows * self.window_seconds
            at = max(now, self._blocked_until, self._last)
            while len(self._sent) > self.limit:
                self._sent.popleft()
            if len(self._sent) >= self.limit:
                at = max(at, self._sent.popleft()[1] + self.window_seconds + self._margin)
            ticket = next(self._tickets)
            self._issued = ticket + 1
            self._sent.append([ticket, at, False])
            self._last = at
            wait = at - now
            if wait > 0:
                self.waits += 1
                self.waited_seconds += wait
                metrics.observe_wait(wait)
            return Slot(ticket, wait, self)

    def _settle(self, ticket: int, rejected: bool = False, hinted: bool = False) -> int | None:
        if self._shared is not None:
            self._shared.give_back(self.window_seconds + self._margin)
        learned = None
        with self._lock:
            now = self._clock()
            for entry in self._sent:
                if entry[0] == ticket:
                    if rejected:  # the server did not count it
                        self._sent.remove(entry)
                    else:
                        entry[1], entry[2] = max(entry[1], now), True
                        self._accepted += 1
                    break
            if rejected and not hinted:
                self.bare_rejections += 1
                learned = self._lower(ticket, now)
        if learned is not None and self._shared is not None:
            self._shared.learn(learned)
        return learned

    def _lower(self, ticket: int, now: float) -> int | None:
        """A bare 429 for ``ticket``: the limit the server showed, unless this 429 belongs to
        a burst already taught (under the lock)."""
        if ticket < self._burst_end:
            return None
        self._burst_end = self._issued
        since = now - self.window_seconds
        accepted = sum(1 for entry in self._sent if entry[2] and entry[1] > since)
        length, seen, count, first = self._streak
        if seen == self._accepted and count == accepted and now - first <= self.window_seconds:
            self._streak = (length + 1, seen, count, first)
        else:
            self._streak = (1, self._accepted, accepted, now)
        # A server's limit shows as 429 after 429 at one count below our own limit, nothing
        # accepted in between. Random faults come between accepted answers.
        steady = self._streak[0] >= _STREAK
        limited = accepted < self.limit
        if not (steady and limited):
            # Once is no limit: a gateway's hiccup, a fault. Nothing is learned, nobody else
            # waits (the rejected request waits its own backoff); the same count met again
            # is a limit.
            return None
        if now - self._raised_at < self.window_seconds * self._quiet_windows:
            # a raise went too far
            self._quiet_windows = min(_MOST_QUIET_WINDOWS, self._quiet_windows * 2)
        self.limit = max(1, min(accepted, self.limit - 1))
        self.slowdowns += 1
        metrics.observe_slowdown()
        self._raise_at = now + self._quiet_windows * self.window_seconds
        # Nothing leaves before the pace the new limit sets (a full window at one request).
        self._blocked_until = max(self._blocked_until, now + self.window_seconds / self.limit)
        return self.limit

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
