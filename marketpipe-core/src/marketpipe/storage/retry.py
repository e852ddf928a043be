"""One retry policy for every request to object storage, whichever library makes it.

Requests to an object store are made in Rust, by ``object_store`` (through obstore for the
Parquet sink, through delta-rs for the Delta sink), which retries by itself: 5xx answers
(``503 SlowDown`` among them), 429 and broken connections, with capped exponential backoff. This
module gives both the same numbers, taken from the HTTP connectors' defaults
(:class:`~marketpipe.fetch.config.ClientConfig`): six tries, backoff from 0.5 s
doubling to at most 30 s, 30 s per read, 10 s to connect. ``MARKETPIPE_STORE_RETRY_SECONDS``
bounds the time one request may spend retrying (default 300 s, the connectors' bound).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

RETRY_SECONDS_ENV = "MARKETPIPE_STORE_RETRY_SECONDS"


@attrs.frozen
class StoreRetry:
    max_retries: int
    init_backoff: float
    max_backoff: float
    retry_seconds: float
    timeout: float
    connect_timeout: float

    @classmethod
    def shared(cls, environ: dict[str, str] | None = None) -> StoreRetry:
        # Imported here: the connectors package imports storage (its Parquet adapter).
        from marketpipe.fetch.config import MAX_TOTAL_SECONDS, ClientConfig, seconds_from_env

        http = ClientConfig(base_url="http://storage.invalid", max_total_seconds=MAX_TOTAL_SECONDS)
        seconds = seconds_from_env(RETRY_SECONDS_ENV, MAX_TOTAL_SECONDS, environ)
        return cls(
            max_retries=http.max_attempts - 1,
            init_backoff=http.backoff_base,
            max_backoff=http.backoff_cap,
            retry_seconds=seconds,
            timeout=http.timeout,
            connect_timeout=http.connect_timeout,
        )

    def obstore(self) -> dict[str, Any]:
        """obstore's ``retry_config``."""
        return {
            "max_retries": self.max_retries,
            "backoff": {
                "init_backoff": dt.timedelta(seconds=self.init_backoff),
                "max_backoff": dt.timedelta(seconds=self.max_backoff),
                "base": 2.0,
            },
            "retry_timeout": dt.timedelta(seconds=self.retry_seconds),
        }

    def client_options(self) -> dict[str, str]:
        """``object_store``'s client timeouts, as options (obstore and delta-rs take these)."""
        return {"timeout": f"{self.timeout:g}s", "connect_timeout": f"{self.connect_timeout:g}s"}

    def storage_options(self) -> dict[str, str]:
        """delta-rs's ``storage_options`` for the same policy."""
        return {
            **self.client_options(),
            "max_retries": str(self.max_retries),
            "retry_timeout": f"{self.retry_seconds:g}s",
            "backoff_config.init_backoff": f"{self.init_backoff * 1000:g}ms",
            "backoff_config.max_backoff": f"{self.max_backoff:g}s",
            "backoff_config.base": "2",
        }
