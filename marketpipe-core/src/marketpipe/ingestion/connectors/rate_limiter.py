"""``RateLimiter``: at most N requests in any window, shared by every thread and task of a job."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """A sliding-window limiter that hands out send times in order.

    Each ``acquire`` reserves the earliest moment at which sending keeps at most
    ``requests_per_window`` requests in any ``window_seconds``, then waits for it. Reservations are
    made under a lock, so threads and asyncio tasks sharing one limiter never exceed the limit
    together. A small margin absorbs the network's jitter so our own pacing never draws a 429.
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
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0
        self.waited_seconds = 0.0
        self.waits = 0

    def _reserve(self) -> float:
        with self._lock:
            now = self._clock()
            at = max(now, self._blocked_until)
            if self._sent:
                at = max(at, self._sent[-1])
            if len(self._sent) >= self.requests_per_window:
                at = max(at, self._sent.popleft() + self.window_seconds + self._margin)
            self._sent.append(at)
            wait = at - now
            if wait > 0:
                self.waits += 1
                self.waited_seconds += wait
            return wait

    def acquire(self) -> float:
        """Wait (blocking) for a send slot; return the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            time.sleep(wait)
        return wait

    async def async_acquire(self) -> float:
        """Wait (without blocking the event loop) for a send slot; return the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def penalize(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the server asked us to back off)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
