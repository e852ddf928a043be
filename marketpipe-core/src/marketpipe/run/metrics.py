"""The job's side of the Prometheus metrics: counts from its events, and /metrics served."""

from __future__ import annotations

from prometheus_client import start_http_server

from marketpipe.fetch.metrics import BARS_WRITTEN, PARTITIONS, ROWS_REJECTED
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.events import IngestionBatchProcessed, IngestionPartitionFailed


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
