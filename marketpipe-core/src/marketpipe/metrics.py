"""Prometheus metrics of ingestion: ``mp ingest --metrics-port N`` serves them on /metrics.

Connectors count requests, retries, 429s, rate-limiter waits and bytes; the coordinator times
unit commits; a subscriber of the event bus counts bars written, rows rejected and partitions.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from marketpipe.ingestion.domain.events import (
    IngestionBatchProcessed,
    IngestionPartitionFailed,
)
from marketpipe.ingestion.infrastructure.event_bus import EventBus

REQUESTS = Counter("marketpipe_requests", "HTTP requests to providers", ["provider", "status"])
RETRIES = Counter("marketpipe_retries", "Requests retried after a failed attempt", ["provider"])
RATE_LIMITED = Counter("marketpipe_rate_limited", "Answers 429 from providers", ["provider"])
RATE_LIMITER_WAIT = Histogram(
    "marketpipe_rate_limiter_wait_seconds",
    "Time requests waited for the rate limiter",
    buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
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


class MetricsSubscriber:
    """Counts the job's events into the Prometheus counters above."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(IngestionBatchProcessed, self._processed)
        bus.subscribe(IngestionPartitionFailed, self._failed)

    def _processed(self, event: IngestionBatchProcessed) -> None:
        BARS_WRITTEN.labels(self.provider).inc(event.bars_count)
        ROWS_REJECTED.labels(self.provider).inc(event.rejected_count)
        PARTITIONS.labels(self.provider, "COMPLETED").inc()

    def _failed(self, event: IngestionPartitionFailed) -> None:
        PARTITIONS.labels(self.provider, "FAILED").inc()


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on ``host:port`` from a daemon thread for the life of the process."""
    start_http_server(port, addr=host)
