"""``mp verify``: check the catalog and the job store against the files."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from marketpipe.cli.common import console, data_dir_option, emit_json, json_option, user_errors
from marketpipe.dataset.operations import run_verify
from marketpipe.storage.verify import problem_counts


@click.command()
@data_dir_option
@json_option
@user_errors
def verify(data_dir: Path, as_json: bool) -> None:
    """Check that the files, the catalog and the job store agree; exit 1 with a report if not.

    Missing partitions found here are fetched again by the next mp update or mp ingest.
    """
    if not data_dir.is_dir():
        click.echo(f"Error: no dataset at {data_dir}", err=True)
        sys.exit(2)
    report, notes = run_verify(data_dir)
    if as_json:
        emit_json(
            {
                "data_dir": str(data_dir),
                "ok": report.ok,
                "series": report.series,
                "files": report.files,
                "partitions": report.partitions,
                "bars": report.bars,
                "problems": [
                    {"kind": p.kind, "path": p.path, "detail": p.detail} for p in report.problems
                ],
                "notes": notes,
            }
        )
    else:
        for note in notes:
            console.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)
        console.print(
            f"{report.series} series, {report.files:,} files, {report.partitions:,} partitions, "
            f"{report.bars:,} bars"
        )
        if report.ok:
            console.print("[green]OK[/]: the files, the catalog and the job store agree")
        else:
            table = Table(title=f"{len(report.problems)} problems")
            table.add_column("kind", no_wrap=True)
            table.add_column("path", overflow="fold")
            table.add_column("detail", overflow="fold")
            for problem in report.problems:
                table.add_row(problem.kind, Text(problem.path), Text(problem.detail))
            console.print(table)
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(problem_counts(report).items()))
            console.print(
                f"[red]Not whole[/] ({counts}). The catalog now matches the files: "
                "mp update (or mp ingest) fetches what is missing."
            )
    sys.exit(0 if report.ok else 1)
