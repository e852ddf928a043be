"""The seed's import path of the provider registry, event bus, job store and bar storage."""

from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.plugins.registry import (
    build_provider,
    configure,
    get,
    get_available_providers,
    list_providers,
    provider,
    register,
    unregister,
)
from marketpipe.storage.bar_storage import ParquetDataStorage

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
