"""Retries live in one layer (the connector), and a stopped job stops within seconds even while a
request waits: a real HTTP provider against a scripted server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from marketpipe.ingestion import ProcessingState, Symbol, TimeRange
from marketpipe.ingestion.connectors import BaseApiClient, ClientConfig, RateLimiter
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.request import FetchRequest
from marketpipe.model.schema import bars_batch
from marketpipe.plugins import registry
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.specs import ProviderSpec, Setting
from marketpipe.run.outcome import CancelToken
from marketpipe.run.pipeline import IngestRequest, run_ingest
from marketpipe.testing.http import Answer, ScriptedServer

DAY = TimeRange.single_day("2024-01-29")


class Client(BaseApiClient):
    provider_name = "scripted"

    def endpoint(self, symbol: Any) -> str:
        return "/bars"

    def build_request_params(self, symbol, start_ts, end_ts, cursor, **options):  # type: ignore[no-untyped-def]
        return {"symbols": ",".join(symbol)}

    def parse_response(self, raw_json: bytes, **context: Any) -> tuple[pa.Table, str | None]:
        json.loads(raw_json)
        return pa.table({"x": pa.array([], pa.int64())}), None


class HttpProvider(IMarketDataProvider):
    """Asks the scripted server once per unit, with its client's retry policy."""

    feed = "http"

    def __init__(self, base_url: str) -> None:
        self.client = Client(
            ClientConfig(base_url=base_url, max_attempts=3, backoff_base=0.01, backoff_cap=0.02),
            None,
            RateLimiter(1000, 1.0),
        )

    def fetch(self, request: FetchRequest) -> Any:
        raise NotImplementedError

    async def fetch_async(self, request: FetchRequest) -> list[pa.RecordBatch]:
        symbols = [s.value for s in request.symbols]
        await self.client.async_fetch_batch(symbols, 0, 1)
        window = request.windows[0]
        ts = np.array([window.start_ns], dtype=np.int64)
        one = np.array([1.0])
        return [bars_batch(s, ts, one, one, one, one, np.array([1])) for s in symbols]

    async def aclose(self) -> None:
        await self.client.aclose()


@pytest.fixture
def http_provider() -> Iterator[None]:
    registry.register(
        ProviderSpec(
            name="scripted",
            factory=lambda s: HttpProvider(s["base_url"]),
            description="scripted HTTP provider",
            settings=(Setting("base_url", "server", required=True),),
        )
    )
    yield
    registry.unregister("scripted")


def ingest(server: ScriptedServer, data_dir: Path, cancel: CancelToken | None = None) -> Any:
    request = IngestRequest(
        provider="scripted",
        symbols=tuple(Symbol(s) for s in ("AAPL", "MSFT", "SPY", "QQQ")),
        time_range=DAY,
        data_dir=data_dir,
        overrides={"base_url": server.url},
    )
    return asyncio.run(run_ingest(request, cancel=cancel))


def test_a_server_that_is_down_sees_each_request_s_attempts_once(
    http_provider: None, data_dir: Path
) -> None:
    with ScriptedServer([Answer(status=503, body=b'{"message": "down"}')]) as server:
        summary = ingest(server, data_dir)
        # One unit of four symbols: the client's 3 attempts, and nothing on top (no coordinator
        # retries, no per-symbol split for an error about the whole request).
        assert len(server.requests) == 3
    assert summary.state is ProcessingState.FAILED
    assert len(summary.failures) == 4
    assert "HTTP 503" in summary.failures[0].error


def test_a_stop_while_a_request_waits_for_the_server_ends_the_job_in_seconds(
    http_provider: None, data_dir: Path
) -> None:
    # The server asks for a 200 s wait (within the request's 300 s budget): the job would sit
    # in it. A stop must not wait it out.
    answers = [Answer(status=503, body=b"{}", headers={"Retry-After": "200"})]
    cancel = CancelToken()
    with ScriptedServer(answers) as server:

        def stop_after_first_request() -> None:
            while not server.requests:
                time.sleep(0.01)
            cancel.set()

        threading.Thread(target=stop_after_first_request, daemon=True).start()
        started = time.monotonic()
        summary = ingest(server, data_dir, cancel)
        elapsed = time.monotonic() - started
    assert summary.state is ProcessingState.CANCELLED
    assert elapsed < 10, elapsed
    store = SqliteJobStore.for_data_dir(data_dir)
    states = {p.state for p in store.partitions(summary.job_id)}
    assert states == {"PENDING"}  # left for a resume, not failed
