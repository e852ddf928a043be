"""``mp providers``, ``mp sinks`` and ``mp plugins``: what is installed, and why something is not."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text

from marketpipe.cli.common import Column, console, emit_json, fitted_table, json_option, user_errors
from marketpipe.plugins.host import get_plugin_host
from marketpipe.plugins.settings import (
    ConfigFile,
    ResolvedSettings,
    config_path,
    describe_missing,
    resolve_settings,
)
from marketpipe.plugins.specs import ProviderSpec, SinkSpec


def settings_rows(
    spec: ProviderSpec | SinkSpec, resolved: ResolvedSettings
) -> list[dict[str, Any]]:
    """A provider's or sink's settings as ``mp providers``/``mp sinks`` list them."""
    return [
        {
            "name": s.name,
            "description": s.description,
            "default": s.default,
            "secret": s.secret,
            "required": s.required,
            "source": resolved.sources.get(s.name),
        }
        for s in spec.settings
    ]


@click.command()
@json_option
@user_errors
def providers(as_json: bool) -> None:
    """List installed providers: available, or what is missing."""
    host = get_plugin_host()
    config = ConfigFile.load(config_path())
    rows: list[dict[str, Any]] = []
    for name, spec in sorted(host.providers().items()):
        resolved = resolve_settings(spec, {}, config=config)
        rows.append(
            {
                "name": name,
                "distribution": spec.distribution,
                "version": spec.version,
                "description": spec.description,
                "available": not resolved.missing,
                "missing": describe_missing(spec, resolved.missing) if resolved.missing else None,
                "timeframes": [t.value for t in sorted(spec.timeframes, key=lambda t: t.order)],
                "settings": settings_rows(spec, resolved),
            }
        )
    failed = [
        {"name": r.name, "distribution": r.distribution, "version": r.version, "error": r.error}
        for r in host.failed()
    ]
    if as_json:
        emit_json(
            {
                "config_file": str(config.path) if config.path else None,
                "providers": rows,
                "failed": failed,
            }
        )
        return
    # One block per provider, wrapped at word boundaries: environment variable names and
    # settings stay whole at any width (a table cut them to "MARKETPIPE_…").
    for row in rows:
        status = "[green]available[/]" if row["available"] else "[red]not configured[/]"
        console.print(
            f"[bold]{escape(row['name'])}[/] ({escape(row['distribution'] or '?')} "
            f"{escape(row['version'] or '?')}): {status}"
        )
        detail = [Text(row["description"])]
        if row["missing"]:
            detail.append(Text(row["missing"], style="red"))
        settings = ", ".join(
            s["name"] + ("*" if s["required"] else "") + (" (secret)" if s["secret"] else "")
            for s in row["settings"]
        )
        detail.append(Text("settings: " + (settings or "-")))
        detail.append(Text("timeframes: " + " ".join(row["timeframes"])))
        for line in detail:
            console.print(Padding(line, (0, 0, 0, 2), expand=False))
    for bad in failed:
        console.print(
            Text.assemble(
                (str(bad["name"]), "bold"),
                f" ({bad['distribution']} {bad['version']}): ",
                (f"failed to load: {bad['error']}", "red"),
            )
        )
    console.print(
        Text("* required; set with -o NAME=VALUE, MARKETPIPE_<PROVIDER>_<NAME> or the config file")
    )
    console.print(
        f"config file: {config.path or 'none (./marketpipe.toml or ~/.config/marketpipe/config.toml)'}"
    )


@click.command()
@json_option
@user_errors
def sinks(as_json: bool) -> None:
    """List installed storage sinks and their settings."""
    from marketpipe.storage.sinks import DEFAULT_SINK, SINK_ENV

    host = get_plugin_host()
    config = ConfigFile.load(config_path())
    rows: list[dict[str, Any]] = []
    for name, spec in sorted(host.sinks().items()):
        resolved = resolve_settings(spec, {}, config=config)
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_SINK,
                "distribution": spec.distribution,
                "version": spec.version,
                "description": spec.description,
                "kinds": sorted(k.value for k in spec.kinds),
                "missing": describe_missing(spec, resolved.missing) if resolved.missing else None,
                "settings": [
                    {**row, "value": None if row["secret"] else resolved.values.get(row["name"])}
                    for row in settings_rows(spec, resolved)
                ],
            }
        )
    if as_json:
        emit_json({"config_file": str(config.path) if config.path else None, "sinks": rows})
        return
    for row in rows:
        default = " [dim](default)[/]" if row["default"] else ""
        console.print(
            f"[bold]{escape(row['name'])}[/] ({escape(row['distribution'] or '?')} "
            f"{escape(row['version'] or '?')}){default}"
        )
        detail = [Text(row["description"]), Text("stores: " + ", ".join(row["kinds"]))]
        if row["missing"]:
            detail.append(Text(row["missing"], style="red"))
        for s in row["settings"]:
            value = "(secret)" if s["secret"] else s["value"]
            detail.append(Text(f"{s['name']} = {value}: {s['description']}"))
        for line in detail:
            console.print(Padding(line, (0, 0, 0, 2), expand=False))
    console.print(
        Text(
            f'choose with --sink NAME, {SINK_ENV} or sink = "NAME" in the config file; set '
            "with --sink-option NAME=VALUE, MARKETPIPE_SINK_<SINK>_<NAME> or [sinks.<sink>]"
        )
    )


@click.command()
@json_option
@user_errors
def plugins(as_json: bool) -> None:
    """List loaded plugins, the hooks each implements, and load errors."""
    host = get_plugin_host()
    records = host.records()
    data = [
        {
            "name": r.name,
            "distribution": r.distribution,
            "version": r.version,
            "builtin": r.builtin,
            "hooks": list(r.hooks),
            "error": r.error,
        }
        for r in records
    ]
    if as_json:
        emit_json(data)
        return
    columns = [
        Column("name", keep=True),
        Column("status", keep=True),
        Column("hooks", 3),
        Column("distribution", 2),
        Column("version", 1),
    ]
    table_rows = [
        [
            Text(r.name),
            "[red]failed[/]" if r.error else "[green]loaded[/]",
            ", ".join(r.hooks) or "-",
            Text(r.distribution),
            Text(r.version),
        ]
        for r in records
    ]
    table = fitted_table(columns, table_rows, title="Plugins")
    console.print(table)
    for r in records:
        if r.error:  # whole, below the table: a cell would cut it
            console.print(Text.assemble((r.name, "bold"), ": ", (f"failed: {r.error}", "red")))
