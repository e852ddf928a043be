"""The seed's import path of :mod:`marketpipe.plugins.registry`."""

from marketpipe.plugins.registry import (
    ProviderT,
    build_provider,
    configure,
    get,
    get_available_providers,
    list_providers,
    marketpipe_providers,
    provider,
    register,
    unregister,
)

__all__ = [
    "ProviderT",
    "build_provider",
    "configure",
    "get",
    "get_available_providers",
    "list_providers",
    "marketpipe_providers",
    "provider",
    "register",
    "unregister",
]
