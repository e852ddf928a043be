"""``mp compact``: as few files per month folder as its size warrants."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from marketpipe.cli.common import (
    Column,
    SinkArgs,
    console,
    count_progress,
    data_dir_option,
    emit_json,
    fitted_table,
    json_option,
    selection_options,
    sink_options,
    user_errors,
)
from marketpipe.dataset.operations import Selection, run_compact


@click.command()
@click.option("--dry-run", is_flag=True, help="say what would change, rewrite nothing")
@data_dir_option
@json_option
@user_errors
@selection_options(symbols=False)
@sink_options
def compact(
    sink: SinkArgs,
    selection: Selection,
    dry_run: bool,
    data_dir: Path,
    as_json: bool,
) -> None:
    """Rewrite each month folder into as few files as its size warrants (one a month for
    typical minute data). The rows stay identical; ingests into a folder wait while it is
    compacted."""
    progress, advance = count_progress("compact", "folders", enabled=not as_json)
    with progress:
        results = run_compact(
            data_dir,
            selection,
            dry_run=dry_run,
            on_folder=advance,
            sink_name=sink.name,
            sink_options=sink.options,
        )
    rows = [
        {
            "provider": r.series.provider,
            "feed": r.series.feed,
            "adjustment": r.series.adjustment,
            "timeframe": r.series.timeframe.value,
            "month": r.month,
            "files_before": r.files_before,
            "files_after": r.files_after,
            "rows": r.rows,
            "duplicates_dropped": r.duplicates_dropped,
            "changed": r.changed,
        }
        for r in results
    ]
    if as_json:
        emit_json({"dry_run": dry_run, "folders": rows})
        return
    changed = [r for r in results if r.changed]
    table = fitted_table(
        [
            Column("series", keep=True),
            Column("month", keep=True),
            Column("files", keep=True, justify="right"),
            Column("rows", 2, justify="right"),
            Column("dupl.", 1, justify="right"),
        ],
        [
            [
                Text(str(r.series)),
                r.month,
                f"{r.files_before} -> {r.files_after}",
                f"{r.rows:,}",
                f"{r.duplicates_dropped:,}",
            ]
            for r in changed
        ],
    )
    if changed:
        console.print(table)
    verb = "would be rewritten" if dry_run else "rewritten"
    console.print(
        f"{len(changed)} of {len(results)} month folders {verb}; "
        f"{sum(r.files_before for r in changed):,} files -> {sum(r.files_after for r in changed):,}"
    )
