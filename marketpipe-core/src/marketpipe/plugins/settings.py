"""Provider and sink settings: ``-o KEY=VALUE`` (``--sink-option`` for a sink), then
``MARKETPIPE_<PROVIDER>_<KEY>`` (``MARKETPIPE_SINK_<SINK>_<KEY>``), then the config file, then the
default.

The config file is TOML, read from ``./marketpipe.toml`` or else the per-user config folder
(``$XDG_CONFIG_HOME/marketpipe/config.toml``, by default ``~/.config/marketpipe/config.toml``)::

    sink = "parquet"

    [providers.alpaca]
    feed = "iex"

    [sinks.parquet]
    compression = "zstd"
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from marketpipe.model.errors import InvalidInputError
from marketpipe.model.secrets import Secret, scrub
from marketpipe.plugins.specs import ProviderSpec, SinkSpec

CONFIG_ENV = "MARKETPIPE_CONFIG"


def config_path(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file that applies, or ``None`` when there is none."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = (cwd or Path.cwd()) / "marketpipe.toml"
    if local.is_file():
        return local
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    user = base / "marketpipe" / "config.toml"
    return user if user.is_file() else None


#: What a config file may hold at its top level: each is read by one stage (the sink chosen,
#: where units run, the run's deadline) or is a table of plugin settings.
TOP_LEVEL_KEYS = ("deadline", "executor", "providers", "scheduler", "sink", "sinks")


@attrs.frozen
class ConfigFile:
    path: Path | None
    data: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path | None) -> ConfigFile:
        if path is None:
            return cls(None, {})
        try:
            data = _read(path)
        except FileNotFoundError:
            raise InvalidInputError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise InvalidInputError(f"config file {path} is a folder, not a file") from None
        except UnicodeDecodeError:
            raise InvalidInputError(f"config file {path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"config file {path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise InvalidInputError(
                f"config file {path} cannot be read: {exc.strerror or exc}"
            ) from None
        unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
        if unknown:
            close = difflib.get_close_matches(unknown[0], TOP_LEVEL_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InvalidInputError(
                f"config file {path}: unknown key {unknown[0]!r}; {hint}"
                f"its keys: {', '.join(TOP_LEVEL_KEYS)}"
            )
        for kind in ("providers", "sinks"):
            _check_sections(path, data, kind)
        sink = data.get("sink")
        if sink is not None and not isinstance(sink, str):
            raise InvalidInputError(
                f"config file {path}: sink must be a sink's name (a string), "
                f"not {type(sink).__name__}"
            )
        return cls(path, data)

    def section(self, kind: str, name: str) -> Mapping[str, Any]:
        """``[<kind>.<name>]`` (``kind`` is ``providers`` or ``sinks``)."""
        section: Mapping[str, Any] = self.data.get(kind, {}).get(name, {})
        return section


_PARSED: dict[tuple[Path, int, int], dict[str, Any]] = {}


def _read(path: Path) -> dict[str, Any]:
    """The TOML of ``path``, parsed once while the file is unchanged: one command resolves a
    provider's, a sink's and the executor's settings from one parse of the file."""
    with path.open("rb") as fh:
        st = os.fstat(fh.fileno())
        key = (path.absolute(), st.st_mtime_ns, st.st_size)
        if key not in _PARSED:
            _PARSED.clear()
            _PARSED[key] = _parse(fh)
    return _PARSED[key]


def forget_parsed_config() -> None:
    """The next read of a config file parses it again."""
    _PARSED.clear()


def _parse(fh: Any) -> dict[str, Any]:
    return tomllib.load(fh)


def _check_sections(path: Path, data: Mapping[str, Any], kind: str) -> None:
    tables = data.get(kind, {})
    if not isinstance(tables, Mapping):
        raise InvalidInputError(
            f"config file {path}: {kind} must be a table ([{kind}.<name>]), "
            f"not {type(tables).__name__}"
        )
    for name, section in tables.items():
        if not isinstance(section, Mapping):
            raise InvalidInputError(
                f"config file {path}: [{kind}.{name}] must be a table of settings, "
                f"not {type(section).__name__}"
            )
        for key, value in section.items():
            if isinstance(value, Mapping | list) or value is None:
                raise InvalidInputError(
                    f"config file {path}: {kind}.{name}.{key} must be a string, number or boolean"
                )


def parse_overrides(pairs: tuple[str, ...] | list[str], flag: str = "-o") -> dict[str, str]:
    """``["feed=iex", "key=..."]`` to a dict; a pair without ``=`` is a user error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"invalid option {pair.split('=')[0]!r}: use {flag} KEY=VALUE")
        out[key.strip().lower().replace("-", "_")] = value
    return out


@attrs.frozen
class ResolvedSettings:
    """Settings of one provider: values (secrets wrapped), where each came from, what is missing."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    missing: tuple[str, ...]
    config_path: Path | None

    def public(self) -> dict[str, str]:
        """The settings safe to store and show: everything except secrets, and URLs without
        their ``user:password@``."""
        return {k: scrub(str(v)) for k, v in self.values.items() if not isinstance(v, Secret)}

    def secrets(self) -> tuple[Secret, ...]:
        """The secret values, to scrub from messages that come from outside."""
        return tuple(v for v in self.values.values() if isinstance(v, Secret))


def _kind(spec: ProviderSpec | SinkSpec) -> tuple[str, str]:
    """(config section, environment prefix) of a spec's settings."""
    return (
        ("sinks", "MARKETPIPE_SINK_")
        if isinstance(spec, SinkSpec)
        else ("providers", "MARKETPIPE_")
    )


def env_var(spec: ProviderSpec | SinkSpec, key: str) -> str:
    return f"{_kind(spec)[1]}{spec.name.upper().replace('-', '_')}_{key.upper()}"


def resolve_settings(
    spec: ProviderSpec | SinkSpec,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    config: ConfigFile | None = None,
) -> ResolvedSettings:
    env = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    config = config if config is not None else ConfigFile.load(config_path(environ=env))
    known = {s.name for s in spec.settings}
    kind = _kind(spec)[0]
    unknown = sorted(set(overrides) - known)
    if unknown:
        listing = ", ".join(sorted(known)) or "none"
        raise InvalidInputError(
            f"unknown setting {unknown[0]!r} for {kind.removesuffix('s')} {spec.name}; "
            f"its settings: {listing}"
        )
    section = config.section(kind, spec.name)
    unknown = sorted(set(section) - known)
    if unknown:
        listing = ", ".join(sorted(known)) or "none"
        raise InvalidInputError(
            f"config file {config.path}: unknown setting {unknown[0]!r} in [{kind}."
            f"{spec.name}]; its settings: {listing}"
        )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    for setting in spec.settings:
        value: Any = None
        source = ""
        own_env = env_var(spec, setting.name)
        if setting.name in overrides:
            value, source = overrides[setting.name], "-o"
        elif env.get(own_env):
            value, source = env[own_env], own_env
        elif any(env.get(name) for name in setting.env):
            name = next(n for n in setting.env if env.get(n))
            value, source = env[name], name
        elif setting.name in section:
            raw = section[setting.name]
            text = str(raw).lower() if isinstance(raw, bool) else str(raw)
            value, source = text, f"config file {config.path}"
        elif setting.default is not None:
            value, source = setting.default, "default"
        if value is None or value == "":
            if setting.required:
                missing.append(setting.name)
            continue
        values[setting.name] = Secret(value) if setting.secret else value
        sources[setting.name] = source
    return ResolvedSettings(values, sources, tuple(missing), config.path)


def describe_missing(spec: ProviderSpec | SinkSpec, missing: tuple[str, ...]) -> str:
    """One line naming what to set for each missing setting."""
    flag = "--sink-option" if isinstance(spec, SinkSpec) else "-o"
    parts = []
    for setting in spec.settings:
        if setting.name in missing:
            names = [env_var(spec, setting.name), *setting.env]
            parts.append(f"{setting.name} (set {' or '.join(names)}, or {flag} {setting.name}=...)")
    return "missing " + "; ".join(parts)


def parse_number(
    owner: str, name: str, value: str, *, integer: bool = False, positive: bool = True
) -> float:
    """A setting's text as a finite number (a whole one when ``integer``), positive unless told
    otherwise; anything else (``nan``, ``inf``, ``2.5`` where a count is meant) is one clear
    :class:`InvalidInputError` naming the setting."""
    kind = "a whole number" if integer else "a number"
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if (
        not math.isfinite(number)
        or (integer and not number.is_integer())
        or (positive and number <= 0)
    ):
        sign = "positive " if positive else ""
        raise InvalidInputError(f"{owner}: {name} must be {sign}{kind}, got {value!r}")
    return number
