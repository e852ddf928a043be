"""Fixtures for marketpipe-alpaca: a client with fast retries, a recorder of sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alpaca_helpers import BASE, KEY, SECRET
from marketpipe.fetch import ClientConfig, RateLimiter
from marketpipe.fetch import client as base_client_module
from marketpipe_alpaca.client import AlpacaClient


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries sleep instantly here; the waits they asked for are recorded."""
    recorded: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(base_client_module.time, "sleep", recorded.append)
    monkeypatch.setattr(base_client_module.asyncio, "sleep", fake_async_sleep)
    return recorded


@pytest.fixture
def client(sleeps: list[float]) -> Iterator[AlpacaClient]:
    config = ClientConfig(
        base_url=BASE,
        api_key=KEY,
        api_secret=SECRET,
        max_attempts=4,
        backoff_base=0.01,
        backoff_cap=0.05,
    )
    c = AlpacaClient(config, rate_limiter=RateLimiter(10_000, 60.0))
    yield c
    c.close()
