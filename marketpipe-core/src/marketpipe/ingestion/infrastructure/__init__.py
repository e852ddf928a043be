"""Infrastructure: provider registry, event bus, job store and Parquet storage."""

from marketpipe.ingestion.infrastructure.event_bus import EventBus
from marketpipe.ingestion.infrastructure.job_store import SqliteJobStore
from marketpipe.ingestion.infrastructure.parquet_storage import ParquetDataStorage
from marketpipe.ingestion.infrastructure.registry import (
    build_provider,
    configure,
    get,
    get_available_providers,
    list_providers,
    provider,
    register,
    unregister,
)

__all__ = [
    "EventBus",
    "ParquetDataStorage",
    "SqliteJobStore",
    "build_provider",
    "configure",
    "get",
    "get_available_providers",
    "list_providers",
    "provider",
    "register",
    "unregister",
]
