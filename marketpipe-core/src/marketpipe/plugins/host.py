"""The plugin manager: built-ins plus the ``marketpipe`` entry-point group, loaded on demand.

- A guarded loader: a plugin that fails to import (or whose hook raises) is recorded with its error
  and reported by ``mp plugins``; the others still load.
- ``MARKETPIPE_PLUGINS=a,b`` loads only those entry points; ``MARKETPIPE_DISABLE_PLUGINS=c`` skips
  them. Built-ins are essential and always load.
- ``MARKETPIPE_TRACE_PLUGINS=1`` prints every hook call to stderr.
- Two plugins claiming one name raise :class:`~marketpipe.model.errors.PluginConflictError` naming both
  distributions.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

import attrs
import pluggy

from marketpipe.model.errors import PluginConflictError
from marketpipe.model.values import Kind
from marketpipe.model.version import __version__
from marketpipe.plugins import hookspecs
from marketpipe.plugins.specs import ProviderSpec, SinkSpec, ValidatorSpec
from marketpipe.plugins.validator import Validator

ENTRY_POINT_GROUP = "marketpipe"
ALLOW_ENV = "MARKETPIPE_PLUGINS"
BLOCK_ENV = "MARKETPIPE_DISABLE_PLUGINS"
TRACE_ENV = "MARKETPIPE_TRACE_PLUGINS"

#: Built-in plugins, registered exactly like third-party ones.
BUILTIN_PLUGINS = (
    "marketpipe.storage.parquet_sink",
    "marketpipe.validate.ohlcv",
    "marketpipe.validate.ticks",
    "marketpipe.plugins.registry",
)
CORE_DISTRIBUTION = "marketpipe-core"

SpecT = TypeVar("SpecT", ProviderSpec, ValidatorSpec, SinkSpec)


@attrs.frozen
class PluginRecord:
    """What ``mp plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: tuple[str, ...] = ()
    error: str | None = None


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


class PluginHost:
    """A loaded plugin manager and what it learned while loading."""

    def __init__(self, entry_points_: Iterable[EntryPoint] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._records: dict[str, PluginRecord] = {}
        if os.environ.get(TRACE_ENV):
            self.pm.trace.root.setwriter(lambda text: print(text, end="", file=sys.stderr))
            self.pm.enable_tracing()
        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            self.pm.register(module, name=module_name)
            self._records[module_name] = PluginRecord(
                module_name,
                CORE_DISTRIBUTION,
                __version__,
                builtin=True,
                hooks=self._hooks_of(module),
            )
        eps = entry_points(group=ENTRY_POINT_GROUP) if entry_points_ is None else entry_points_
        self._load_entry_points(eps)

    def _load_entry_points(self, eps: Iterable[EntryPoint]) -> None:
        allow, block = _env_names(ALLOW_ENV), _env_names(BLOCK_ENV) or set()
        for ep in eps:
            if (allow is not None and ep.name not in allow) or ep.name in block:
                continue
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "unknown"
            if self.pm.get_plugin(ep.name) is not None:
                other = self._records[ep.name].distribution
                self._records[f"{ep.name} ({dist})"] = PluginRecord(
                    ep.name,
                    dist,
                    version,
                    builtin=False,
                    error=f"plugin name {ep.name!r} is already taken by {other}",
                )
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not stop the others
                self._records[ep.name] = PluginRecord(
                    ep.name, dist, version, builtin=False, error=f"{type(exc).__name__}: {exc}"
                )
                continue
            self._records[ep.name] = PluginRecord(
                ep.name, dist, version, builtin=False, hooks=self._hooks_of(plugin)
            )

    def _hooks_of(self, plugin: object) -> tuple[str, ...]:
        callers = self.pm.get_hookcallers(plugin) or []
        return tuple(sorted(c.name for c in callers))

    def records(self) -> list[PluginRecord]:
        return sorted(self._records.values(), key=lambda r: (not r.builtin, r.name))

    def failed(self) -> list[PluginRecord]:
        """Plugins that did not load (or whose hook raised), with why."""
        return [r for r in self.records() if r.error]

    def _collect(self, hook_name: str, kind: type[SpecT]) -> dict[str, SpecT]:
        found: dict[str, SpecT] = {}
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        for impl in reversed(impls):  # registration order
            plugin_name = self.pm.get_name(impl.plugin) or "?"
            record = self._records.get(plugin_name)
            # Called through pluggy (so MARKETPIPE_TRACE_PLUGINS shows it), one plugin at a
            # time (so one plugin's failure is that plugin's alone).
            others = [i.plugin for i in impls if i.plugin is not impl.plugin]
            one = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
            try:
                specs = [spec for result in one() for spec in (result or [])]
            except Exception as exc:
                if record is not None:
                    self._records[plugin_name] = attrs.evolve(
                        record, error=f"{hook_name} raised {type(exc).__name__}: {exc}"
                    )
                continue
            for spec in specs:
                if not isinstance(spec, kind):
                    raise TypeError(
                        f"{plugin_name}.{hook_name} returned {spec!r}, not {kind.__name__}"
                    )
                if spec.distribution is None:
                    dist = record.distribution if record else plugin_name
                    spec = attrs.evolve(spec, distribution=dist)
                if isinstance(spec, ProviderSpec | SinkSpec) and spec.version is None and record:
                    spec = attrs.evolve(spec, version=record.version)
                if spec.name in found:
                    first = found[spec.name].distribution
                    raise PluginConflictError(
                        f"two plugins provide the {kind.__name__.removesuffix('Spec').lower()} "
                        f"{spec.name!r}: {first} and {spec.distribution}; uninstall one or "
                        f"disable it with {BLOCK_ENV}"
                    )
                found[spec.name] = spec
        return found

    def providers(self) -> dict[str, ProviderSpec]:
        return self._collect("marketpipe_providers", ProviderSpec)

    def validators(self) -> dict[str, ValidatorSpec]:
        return self._collect("marketpipe_validators", ValidatorSpec)

    def validators_for(self, kind: Kind | str) -> list[Validator]:
        """A new validator of each installed spec that checks ``kind`` (bars, trades, quotes)."""
        wanted = Kind.parse(kind)
        return [spec.factory() for spec in self.validators().values() if wanted in spec.kinds]

    def sinks(self) -> dict[str, SinkSpec]:
        return self._collect("marketpipe_sinks", SinkSpec)


@functools.cache
def get_plugin_host() -> PluginHost:
    """The process's plugin host, built on first use (never at import time)."""
    return PluginHost()


def reset_plugins() -> None:
    """Forget the loaded plugins; the next call to :func:`get_plugin_host` loads them again."""
    get_plugin_host.cache_clear()


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("marketpipe_"))
