"""The plugin system: hook specifications, provider/validator/sink specs and protocols, the
plugin host, the provider registry, and settings (flags, environment, config file).

What a plugin author needs is importable from here::

    from marketpipe.plugins import IMarketDataProvider, ProviderSpec, Setting, bars_batch, hookimpl
"""

from marketpipe.model.schema import BAR_SCHEMA, bars_batch
from marketpipe.model.values import Series, Session, Symbol, Timeframe
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.sink import CommitRequest, Held, ListingSink, Sink
from marketpipe.plugins.specs import ProviderSpec, Setting, SinkSpec, ValidatorSpec
from marketpipe.plugins.validator import ValidationContext, ValidationResult, Validator

__all__ = [
    "BAR_SCHEMA",
    "CommitRequest",
    "Held",
    "IMarketDataProvider",
    "ListingSink",
    "ProviderSpec",
    "Series",
    "Session",
    "Setting",
    "Sink",
    "SinkSpec",
    "Symbol",
    "Timeframe",
    "ValidationContext",
    "ValidationResult",
    "Validator",
    "ValidatorSpec",
    "bars_batch",
    "hookimpl",
]
