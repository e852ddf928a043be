"""Choosing and building a dataset's sink.

The sink is a property of the dataset: the first command that writes records its name in
``_marketpipe/dataset.json``, and every later command uses it. ``--sink NAME`` (else
``MARKETPIPE_SINK``, else ``sink = "NAME"`` in the config file) chooses it for a new dataset; for a
dataset written by another sink it is refused with one line, since the two would each hold a copy
of the bars that no reader could tell apart. With no choice anywhere the sink is ``parquet``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import attrs

from marketpipe.errors import InvalidInputError
from marketpipe.plugins import get_plugin_host
from marketpipe.settings import (
    ConfigFile,
    ResolvedSettings,
    config_path,
    describe_missing,
    resolve_settings,
)
from marketpipe.specs import SinkSpec
from marketpipe.storage.atomic import write_atomic
from marketpipe.storage.base import Sink
from marketpipe.storage.layout import META_DIR

SINK_ENV = "MARKETPIPE_SINK"
DEFAULT_SINK = "parquet"
MANIFEST = "dataset.json"


@attrs.frozen
class ChosenSink:
    spec: SinkSpec
    settings: ResolvedSettings
    #: The dataset does not record a sink yet (the first write records this one).
    new: bool

    def build(self, root: Path | str) -> Sink:
        return self.spec.factory(root, self.settings.values)


def recorded_sink(root: Path) -> str | None:
    """The sink the dataset at ``root`` was written by (``None``: no record)."""
    path = Path(root) / META_DIR / MANIFEST
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path} cannot be read: {exc}") from None
    sink = data.get("sink") if isinstance(data, dict) else None
    if not isinstance(sink, str):
        raise InvalidInputError(f"{path} does not name the dataset's sink")
    return sink


def record_sink(root: Path, name: str) -> None:
    path = Path(root) / META_DIR / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"sink": name}, indent=2).encode() + b"\n"

    def write(fh: BinaryIO) -> None:
        fh.write(body)

    write_atomic(path, write)


def get_sink_spec(name: str) -> SinkSpec:
    sinks = get_plugin_host().sinks()
    key = name.strip().lower()
    if key not in sinks:
        installed = ", ".join(sorted(sinks)) or "none"
        failed = [r for r in get_plugin_host().failed() if r.name.lower() == key]
        why = f" ({failed[0].distribution} failed to load: {failed[0].error})" if failed else ""
        raise InvalidInputError(f"unknown sink {name!r}{why}; installed sinks: {installed}")
    return sinks[key]


def choose_sink(
    root: Path,
    requested: str | None = None,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    config: ConfigFile | None = None,
) -> ChosenSink:
    """The sink for the dataset at ``root``, with its resolved settings (see the module)."""
    env = os.environ if environ is None else environ
    config = config if config is not None else ConfigFile.load(config_path(environ=env))
    asked, where = requested, "--sink"
    if not asked and env.get(SINK_ENV):
        asked, where = env[SINK_ENV], SINK_ENV
    if not asked and config.data.get("sink"):
        asked, where = str(config.data["sink"]), f"sink in {config.path}"
    spec = get_sink_spec(asked) if asked else None
    recorded = recorded_sink(root)
    if asked and recorded and asked.strip().lower() != recorded:
        raise InvalidInputError(
            f"the dataset in {root} is written by the {recorded} sink, not {asked} ({where}); "
            "use another --data-dir for a dataset in another format"
        )
    spec = spec or get_sink_spec(recorded or DEFAULT_SINK)
    resolved = resolve_settings(spec, overrides, env, config)
    if resolved.missing:
        raise InvalidInputError(
            f"sink {spec.name} is not configured: {describe_missing(spec, resolved.missing)}"
        )
    return ChosenSink(spec, resolved, new=recorded is None)


def open_sink(
    root: Path,
    requested: str | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    writing: bool = True,
) -> Sink:
    """Build the dataset's sink; when ``writing``, a new dataset records it first."""
    chosen = choose_sink(root, requested, overrides)
    if writing and chosen.new:
        record_sink(root, chosen.spec.name)
    return chosen.build(root)
