"""The job's overall deadline, as the connectors see it.

A job sets it (:func:`job_deadline`) around its fetches; a connector that keeps meeting rate
limits waits for the server up to this moment instead of giving up after its own retries, and
no request is allowed past it. Outside a job (a library call) there is none.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("marketpipe_job_deadline", default=None)


@contextlib.contextmanager
def job_deadline(at: float | None) -> Iterator[None]:
    """Fetches in this block (and the tasks and threads it starts) end by ``at``
    (``time.time()`` seconds; ``None``: no job deadline)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def job_seconds_left() -> float | None:
    """Seconds until the job's deadline, ``None`` outside a job with one."""
    at = _DEADLINE.get()
    return None if at is None else at - time.time()
