"""Infrastructure: provider registry, event bus, job store and Parquet storage."""

from marketpipe.ingestion.infrastructure.registry import (
    build_provider,
    get,
    get_available_providers,
    list_providers,
    provider,
    register,
    unregister,
)

__all__ = [
    "build_provider",
    "get",
    "get_available_providers",
    "list_providers",
    "provider",
    "register",
    "unregister",
]
