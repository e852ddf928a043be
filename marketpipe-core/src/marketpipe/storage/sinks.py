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

import attrs

from marketpipe.model.errors import InvalidInputError
from marketpipe.plugins.host import get_plugin_host
from marketpipe.plugins.settings import (
    ConfigFile,
    ResolvedSettings,
    config_path,
    describe_missing,
    resolve_settings,
)
from marketpipe.plugins.sink import Sink
from marketpipe.plugins.specs import SinkSpec
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.layout import META_DIR
from marketpipe.storage.listed import build_sink
from marketpipe.storage.location import dataset_root
from marketpipe.storage.stores import open_store

SINK_ENV = "MARKETPIPE_SINK"
DEFAULT_SINK = "parquet"
MANIFEST = "dataset.json"


@attrs.frozen
class ChosenSink:
    spec: SinkSpec
    settings: ResolvedSettings
    #: The dataset does not record a sink yet (the first write records this one).
    new: bool

    def build(self, root: Path) -> Sink:
        """The sink of the dataset whose local root is ``root`` (its files may be remote)."""
        return build_sink(self.spec, dataset_root(root), self.settings.values)


def recorded_sink(root: Path) -> str | None:
    """The sink the dataset at ``root`` was written by (``None``: no record)."""
    store = open_store(dataset_root(root))
    where = f"{store.url}/{META_DIR}/{MANIFEST}"
    try:
        body = store.get(f"{META_DIR}/{MANIFEST}")
        data = json.loads(body) if body is not None else None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{where} cannot be read: {exc}") from None
    if data is None:
        return None
    sink = data.get("sink") if isinstance(data, dict) else None
    if not isinstance(sink, str):
        raise InvalidInputError(f"{where} does not name the dataset's sink")
    return sink


def record_sink(root: Path, name: str) -> None:
    """Record ``name`` as the dataset's sink, unless another writer recorded one first (then
    it must be the same one)."""
    body = json.dumps({"sink": name}, indent=2).encode() + b"\n"
    if open_store(dataset_root(root)).create(f"{META_DIR}/{MANIFEST}", body):
        return
    recorded = recorded_sink(root)
    if recorded != name:
        raise InvalidInputError(
            f"the dataset in {dataset_root(root)} is written by the {recorded} sink, not {name}; "
            "use another --data-dir for a dataset in another format"
        )


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
            f"the dataset in {dataset_root(root)} is written by the {recorded} sink, not {asked} ({where}); "
            "use another --data-dir for a dataset in another format"
        )
    spec = spec or get_sink_spec(recorded or DEFAULT_SINK)
    resolved = resolve_settings(spec, overrides, env, config)
    if resolved.missing:
        raise InvalidInputError(
            f"sink {spec.name} is not configured: {describe_missing(spec, resolved.missing)}"
        )
    return ChosenSink(spec, resolved, new=recorded is None)


def open_catalog(root: Path) -> Catalog:
    """The catalog of the dataset whose local root is ``root``, kept by its sink (its files may
    be remote, or in another format than Parquet). Close it when done."""
    chosen = choose_sink(root)
    return chosen.build(root).catalog


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
