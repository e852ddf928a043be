"""The seed's provider registry API, on top of the plugin manager.

Providers normally arrive through the ``marketpipe`` entry-point group; code can also register one
in-process with the :func:`provider` decorator or :func:`register`. Both kinds are collected through
the same ``marketpipe_providers`` hook (this module is a built-in plugin).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import attrs

from marketpipe.model.errors import (
    InvalidInputError,
    ProviderNotConfiguredError,
    UnknownProviderError,
)
from marketpipe.model.secrets import Secret
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.host import reset_plugins
from marketpipe.plugins.provider import IMarketDataProvider
from marketpipe.plugins.settings import (
    ConfigFile,
    ResolvedSettings,
    describe_missing,
    forget_parsed_config,
    resolve_settings,
)
from marketpipe.plugins.specs import ProviderSpec, Setting, normalise_name

_REGISTERED: dict[str, ProviderSpec] = {}

ProviderT = TypeVar("ProviderT", bound=type[IMarketDataProvider])


@hookimpl
def marketpipe_providers() -> list[ProviderSpec]:
    return list(_REGISTERED.values())


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """A block that leaves the process's plugin state as it found it: providers registered
    in-process inside it are forgotten after it, and the plugin host and the parsed config file
    are loaded afresh on both sides (what tests need to share nothing)."""
    registered = dict(_REGISTERED)
    reset_plugins()
    forget_parsed_config()
    try:
        yield
    finally:
        _REGISTERED.clear()
        _REGISTERED.update(registered)
        reset_plugins()
        forget_parsed_config()


def _class_factory(cls: type[IMarketDataProvider]) -> Callable[[Mapping[str, Any]], Any]:
    def build(settings: Mapping[str, Any]) -> IMarketDataProvider:
        return cls(**dict(settings))

    return build


def provider(
    name: str,
    *,
    description: str | None = None,
    settings: Iterable[Setting] = (),
    **spec_options: Any,
) -> Callable[[ProviderT], ProviderT]:
    """Class decorator: register ``cls`` as provider ``name``; settings become keyword arguments."""

    def decorate(cls: ProviderT) -> ProviderT:
        doc = (cls.__doc__ or "").strip().splitlines()
        register(
            ProviderSpec(
                name=name,
                factory=_class_factory(cls),
                description=description or (doc[0] if doc else name),
                settings=tuple(settings),
                distribution="(registered in-process)",
                **spec_options,
            )
        )
        return cls

    return decorate


def register(spec: ProviderSpec) -> ProviderSpec:
    """Register a provider spec in-process; a second spec with the same name replaces the first."""
    _REGISTERED[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def _all() -> dict[str, ProviderSpec]:
    from marketpipe.plugins.host import get_plugin_host

    return get_plugin_host().providers()


def list_providers() -> list[str]:
    """Names of every installed provider."""
    return sorted(_all())


def get(name: str) -> ProviderSpec:
    """The spec of provider ``name``; an unknown name lists the installed ones."""
    from marketpipe.plugins.host import get_plugin_host

    providers = _all()
    key = name.strip().lower()
    if key not in providers:
        for record in get_plugin_host().failed():
            if record.name.lower() == key:
                raise UnknownProviderError(
                    name, sorted(providers), failed=f"{record.distribution}: {record.error}"
                )
        raise UnknownProviderError(name, sorted(providers))
    return providers[key]


def configure(
    name: str,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    config: ConfigFile | None = None,
) -> tuple[ProviderSpec, ResolvedSettings]:
    """The spec of provider ``name`` and its resolved settings; missing ones are a user error."""
    spec = get(name)
    resolved = resolve_settings(spec, overrides, environ, config)
    if resolved.missing:
        raise ProviderNotConfiguredError(
            f"provider {spec.name} is not configured: {describe_missing(spec, resolved.missing)}"
        )
    return spec, resolved


def build_provider(
    name: str,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    config: ConfigFile | None = None,
) -> IMarketDataProvider:
    """Build provider ``name`` from its resolved settings; missing settings are a user error."""
    spec, resolved = configure(name, overrides, environ, config)
    return spec.factory(resolved.values)


@attrs.frozen
class PreparedProvider:
    spec: ProviderSpec
    provider: IMarketDataProvider
    public_settings: Mapping[str, str]
    #: Scrubbed from every provider message before it is shown, logged or stored.
    secrets: tuple[Secret, ...] = ()


def prepare_provider(
    name: str,
    overrides: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    config: ConfigFile | None = None,
) -> PreparedProvider:
    """Resolve settings and build the provider, failing fast (before any planning) when it is
    misconfigured."""
    spec, resolved = configure(name, overrides, environ, config)
    provider = spec.factory(resolved.values)
    try:
        normalise_name(provider.feed)
    except ValueError:
        raise InvalidInputError(f"provider {spec.name}: invalid feed {provider.feed!r}") from None
    return PreparedProvider(spec, provider, resolved.public(), resolved.secrets())


def get_available_providers(
    environ: Mapping[str, str] | None = None, config: ConfigFile | None = None
) -> list[str]:
    """Providers that are installed and have every required setting."""
    return [
        name
        for name, spec in sorted(_all().items())
        if not resolve_settings(spec, {}, environ, config).missing
    ]
