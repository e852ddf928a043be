"""``mp update``: bring every stored series up to the last completed session."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.text import Text

from marketpipe.cli.common import (
    Column,
    ExecutorArgs,
    SinkArgs,
    batch_size_option,
    concurrency_option,
    console,
    data_dir_option,
    emit_json,
    executor_options,
    fitted_table,
    json_option,
    selection_options,
    sink_options,
    user_errors,
)
from marketpipe.cli.ingest import run_with_progress, summary_dict
from marketpipe.dataset.operations import Selection, UpdateRequest, UpdateResult, run_update
from marketpipe.jobs.job import ProcessingState
from marketpipe.plugins.settings import parse_overrides
from marketpipe.storage.location import dataset_root


def _state(update_state: ProcessingState | None, error: str | None) -> str:
    if error is not None:
        return "ERROR"
    return "CURRENT" if update_state is None else update_state.value


def update_dict(result: UpdateResult, data_dir: Path) -> dict[str, object]:
    return {
        "data_dir": str(dataset_root(data_dir)),
        "notes": list(result.notes),
        "series": [
            {
                "provider": u.series.provider,
                "feed": u.series.feed,
                "adjustment": u.series.adjustment,
                "timeframe": u.series.timeframe.value,
                "symbols": u.symbols,
                "through": u.through.isoformat() if u.through else None,
                "state": _state(u.summary.state if u.summary else None, u.error),
                "error": u.error,
                "job": summary_dict(u.summary, data_dir) if u.summary else None,
                "restated": list(u.restated),
                "restatement": (summary_dict(u.restatement, data_dir) if u.restatement else None),
            }
            for u in result.series
        ],
    }


def print_update(result: UpdateResult) -> None:
    rows = []
    for u in result.series:
        s = u.summary
        state = _state(s.state if s else None, u.error)
        colour = "green" if state in ("COMPLETED", "CURRENT") else "red"
        rows.append(
            [
                Text(str(u.series)),
                f"[{colour}]{state}[/]",
                u.through.isoformat() if u.through else "-",
                f"{s.partitions_completed:,}" if s else "0",
                f"{s.partitions_stored:,}" if s else "-",
                f"{s.bars:,}" if s else "0",
                f"{u.symbols:,}",
            ]
        )
    columns = [
        Column("series", keep=True),
        Column("state", keep=True),
        Column("through", 6),
        Column("fetched", 5, justify="right"),
        Column("stored", 3, justify="right"),
        Column("bars", 4, justify="right"),
        Column("symbols", 2, justify="right"),
    ]
    console.print(fitted_table(columns, rows, title="Update"))
    for u in result.series:
        if u.error:
            console.print(f"[red]{escape(str(u.series))}[/]: {escape(u.error)}", soft_wrap=True)
        for s in u.summaries:
            for note in s.notes:
                console.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)
        for line in u.restated:
            console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)
        for s in u.summaries:
            if s.failures or s.aborted:
                console.print(f"Details: mp jobs show {s.job_id}")
    for note in result.notes:
        console.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)


@click.command()
@data_dir_option
@click.option("-o", "options", multiple=True, metavar="KEY=VALUE", help="provider setting")
@concurrency_option
@batch_size_option
@json_option
@user_errors
@selection_options()
@sink_options
@executor_options
def update(
    sink: SinkArgs,
    executor: ExecutorArgs,
    selection: Selection,
    data_dir: Path,
    options: tuple[str, ...],
    concurrency: int,
    batch_size: int,
    as_json: bool,
) -> None:
    """Bring every stored series (or the selection) up to the last completed session.

    Each symbol is fetched from its first stored day: exactly the sessions that are missing or
    were stored partial. Running it again at once fetches nothing.
    """
    request = UpdateRequest(
        data_dir=data_dir,
        selection=selection,
        overrides=parse_overrides(options),
        max_concurrency=concurrency,
        batch_size=batch_size,
        sink=sink.name,
        sink_options=sink.options,
        executor=executor.kind,
        scheduler=executor.scheduler,
    )
    result = run_with_progress(lambda bus, cancel: run_update(request, bus, cancel), as_json)
    if as_json:
        emit_json(update_dict(result, data_dir))
    else:
        print_update(result)
    states = [s.state for u in result.series for s in u.summaries]
    if any(s is ProcessingState.CANCELLED for s in states):
        click.echo("Cancelled. Run mp update again to carry on.", err=True)
        sys.exit(130)
    if any(u.error or any(s.aborted for s in u.summaries) for u in result.series):
        sys.exit(2)
    sys.exit(0 if all(s is ProcessingState.COMPLETED for s in states) else 1)
