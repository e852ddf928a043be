"""``mp update``: bring every stored series up to the last completed session."""

from __future__ import annotations

import logging
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
    deadline_option,
    emit_json,
    executor_options,
    fitted_table,
    json_option,
    selection_options,
    sink_options,
    user_errors,
)
from marketpipe.cli.ingest import deadline_line, run_with_progress, summary_dict
from marketpipe.dataset.operations import Selection
from marketpipe.dataset.update import SeriesUpdate, UpdateRequest, UpdateResult, run_update
from marketpipe.jobs.job import ProcessingState
from marketpipe.plugins.settings import parse_overrides
from marketpipe.run.outcome import EXIT_STOPPED
from marketpipe.storage.location import dataset_root


def _state(u: SeriesUpdate) -> str:
    if u.error is not None:
        return "ERROR"
    if u.deadline_passed:
        return "DEADLINE"
    return "CURRENT" if u.summary is None else u.summary.state.value


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
                "state": _state(u),
                "error": u.error,
                "job": summary_dict(u.summary, data_dir, u.series.kind.value)
                if u.summary
                else None,
                "restated": list(u.restated),
                "restatement": (
                    summary_dict(u.restatement, data_dir, u.series.kind.value)
                    if u.restatement
                    else None
                ),
                "republished": list(u.republished),
                "refetches": [summary_dict(r, data_dir, u.series.kind.value) for r in u.refetches],
            }
            for u in result.series
        ],
        "exit_code": result.exit_code,
    }


def print_problems(result: UpdateResult) -> None:
    """``--quiet``: one line per series that did not end current, with what to do; nothing
    when all is well (what a nightly job mails should be worth reading)."""
    for u in result.series:
        if u.error:
            click.echo(f"{u.series}: {u.error}", err=True)
        elif u.deadline_passed:
            click.echo(
                f"{u.series}: not started before the deadline; the next run does it", err=True
            )
        for s in u.summaries:
            if s.state is ProcessingState.COMPLETED:
                continue
            why = s.aborted or (s.failures[0].error if s.failures else deadline_line(s))
            click.echo(
                f"{u.series}: {s.state.value}, {len(s.failures):,} partitions failed "
                f"(job {s.job_id}): {why}",
                err=True,
            )
        for line in (*u.restated, *u.republished):
            if " NOT restated" in line or " NOT re-fetched" in line:
                click.echo(line, err=True)


def print_update(result: UpdateResult) -> None:
    rows = []
    for u in result.series:
        s = u.summary
        state = _state(u)
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
        for line in (*u.restated, *u.republished):
            console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)
        for s in u.summaries:
            if s.deadline_passed:
                console.print(f"[red]{escape(deadline_line(s))}[/]", soft_wrap=True)
            if s.failures or s.aborted:
                console.print(f"Details: mp jobs show {s.job_id}")
    for note in result.notes:
        console.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)


@click.command()
@data_dir_option
@click.option("-o", "options", multiple=True, metavar="KEY=VALUE", help="provider setting")
@concurrency_option
@batch_size_option
@deadline_option
@click.option("--quiet", "-q", is_flag=True, help="print only problems (for cron and timers)")
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
    deadline: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Bring every stored series (or the selection) up to the last completed session.

    Each symbol is fetched from its first stored day: exactly the sessions that are missing or
    were stored partial. Running it again at once fetches nothing.

    Exit code: 0 all current, 1 partitions failed (the next run retries them), 2 something a
    person must fix (keys, plan, configuration), 75 the provider unreachable or rate-limited
    past the deadline (try again later), 130 stopped by a signal.
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
        deadline=deadline,
    )
    if quiet:  # retries that worked are not problems; what failed is in the summary lines
        logging.getLogger("marketpipe").setLevel(logging.ERROR)
    result = run_with_progress(
        lambda bus, cancel: run_update(request, bus, cancel), as_json, quiet=quiet
    )
    if as_json:
        emit_json(update_dict(result, data_dir))
    elif quiet:
        print_problems(result)
    else:
        print_update(result)
    code = result.exit_code
    if code == EXIT_STOPPED:
        click.echo("Cancelled. Run mp update again to carry on.", err=True)
    sys.exit(code)
