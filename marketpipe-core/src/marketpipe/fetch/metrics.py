"""Prometheus metrics of ingestion: ``mp ingest --metrics-port N`` serves them on /metrics.

Connectors count requests, retries, 429s, rate-limiter waits and bytes; the coordinator times
unit commits; :mod:`marketpipe.run.metrics` counts bars written, rows rejected and partitions
from the job's events and serves them.
On a cluster the connectors count in the workers: each unit's report brings what its worker
counted since its last report (:class:`Counted`), which the client adds to its own metrics, so
the client's /metrics show the whole job as in a local run.
"""

from __future__ import annotations

import threading

import attrs
from prometheus_client import Counter, Histogram

REQUESTS = Counter("marketpipe_requests", "HTTP requests to providers", ["provider", "status"])
RETRIES = Counter("marketpipe_retries", "Requests retried after a failed attempt", ["provider"])
RATE_LIMITED = Counter("marketpipe_rate_limited", "Answers 429 from providers", ["provider"])
RATE_LIMITER_WAIT = Histogram(
    "marketpipe_rate_limiter_wait_seconds",
    "Time requests waited for the rate limiter",
    buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
)
SLOWDOWNS = Counter(
    "marketpipe_rate_limit_lowered",
    "Times a 429 without a hint lowered the rate limit (once a burst)",
)
BYTES_DOWNLOADED = Counter(
    "marketpipe_bytes_downloaded", "Response bytes received from providers", ["provider"]
)
BARS_WRITTEN = Counter("marketpipe_bars_written", "Bars committed to the dataset", ["provider"])
ROWS_REJECTED = Counter("marketpipe_rows_rejected", "Rows quarantined by validation", ["provider"])
PARTITIONS = Counter(
    "marketpipe_partitions", "Partitions finished, by outcome", ["provider", "state"]
)
COMMIT_SECONDS = Histogram(
    "marketpipe_unit_commit_seconds",
    "Validate, quarantine and commit of one unit of work",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


#: The counters a worker's connectors move, by a name that travels.
_COUNTERS = {
    "requests": REQUESTS,
    "retries": RETRIES,
    "rate_limited": RATE_LIMITED,
    "bytes_downloaded": BYTES_DOWNLOADED,
}


@attrs.frozen
class Counted:
    """What a worker's connectors counted since its last report."""

    #: ``(counter, labels, increase)``.
    counters: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...] = ()
    #: Rate-limiter waits, in seconds, one per request that waited.
    waits: tuple[float, ...] = ()


_REPORTED: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_WAITS: list[float] | None = None
_GUARD = threading.Lock()


def count_for_client() -> None:
    """This process is a worker: keep its rate-limiter waits until :func:`take_counted`."""
    global _WAITS
    with _GUARD:
        if _WAITS is None:
            _WAITS = []


def observe_slowdown() -> None:
    SLOWDOWNS.inc()


def observe_wait(seconds: float) -> None:
    RATE_LIMITER_WAIT.observe(seconds)
    with _GUARD:
        if _WAITS is not None:
            _WAITS.append(seconds)


def take_counted() -> Counted:
    """What this process counted since the last call (each increase is taken once)."""
    counters = []
    with _GUARD:
        for name, counter in _COUNTERS.items():
            for family in counter.collect():
                for sample in family.samples:
                    if not sample.name.endswith("_total"):
                        continue
                    key = (name, tuple(sorted(sample.labels.items())))
                    increase = sample.value - _REPORTED.get(key, 0.0)
                    if increase > 0:
                        _REPORTED[key] = sample.value
                        counters.append((*key, increase))
        waits = tuple(_WAITS or ())
        if _WAITS:
            _WAITS.clear()
    return Counted(tuple(counters), waits)


def add_counted(counted: Counted) -> None:
    """Add what a worker counted to this process's metrics."""
    for name, labels, increase in counted.counters:
        counter = _COUNTERS.get(name)
        if counter is not None:
            counter.labels(**dict(labels)).inc(increase)
    for seconds in counted.waits:
        RATE_LIMITER_WAIT.observe(seconds)
