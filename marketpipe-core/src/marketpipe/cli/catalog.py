"""``mp providers`` and ``mp plugins``: what is installed, and why something is not."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from marketpipe.cli.common import console, emit_json, json_option, user_errors
from marketpipe.plugins import get_plugin_host
from marketpipe.settings import ConfigFile, config_path, describe_missing, resolve_settings


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
                "timeframes": sorted(t.value for t in spec.timeframes),
                "settings": [
                    {
                        "name": s.name,
                        "description": s.description,
                        "default": s.default,
                        "secret": s.secret,
                        "required": s.required,
                        "source": resolved.sources.get(s.name),
                    }
                    for s in spec.settings
                ],
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
    table = Table(title="Providers")
    for column in ("name", "distribution", "version", "status", "settings", "description"):
        table.add_column(column)
    for row in rows:
        status = "[green]available[/]" if row["available"] else f"[red]{escape(row['missing'])}[/]"
        settings = ", ".join(s["name"] for s in row["settings"]) or "-"
        table.add_row(
            row["name"],
            row["distribution"] or "?",
            row["version"] or "?",
            status,
            settings,
            row["description"],
        )
    for bad in failed:
        table.add_row(
            Text(str(bad["name"])),
            Text(str(bad["distribution"])),
            Text(str(bad["version"])),
            Text(f"failed to load: {bad['error']}", style="red"),
            "-",
            "-",
        )
    console.print(table)
    console.print(
        f"config file: {config.path or 'none (./marketpipe.toml or ~/.config/marketpipe/config.toml)'}"
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
    table = Table(title="Plugins")
    for column in ("name", "distribution", "version", "hooks", "status"):
        table.add_column(column)
    for r in records:
        status = f"[red]failed: {escape(r.error)}[/]" if r.error else "[green]loaded[/]"
        table.add_row(r.name, r.distribution, r.version, ", ".join(r.hooks) or "-", status)
    console.print(table)
