"""``mp ingest``: run a job and print its summary."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from marketpipe.cli.common import (
    ExecutorArgs,
    SinkArgs,
    batch_size_option,
    complete_feed,
    complete_provider,
    complete_session,
    complete_timeframe,
    concurrency_option,
    console,
    data_dir_option,
    deadline_option,
    emit_json,
    executor_options,
    json_option,
    sink_options,
    user_errors,
)
from marketpipe.cli.progress import ProgressDisplay
from marketpipe.cli.signals import install_stop_handlers
from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.events import IngestionJobPlanned
from marketpipe.jobs.job import ProcessingState
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import Session, Symbol, Timeframe, TimeRange
from marketpipe.plugins.settings import parse_overrides
from marketpipe.run.outcome import CancelToken, JobSummary
from marketpipe.run.pipeline import IngestRequest, last_completed_session, run_ingest
from marketpipe.storage.location import dataset_root

T = TypeVar("T")


def summary_dict(summary: JobSummary, data_dir: Path, kind: str = "bars") -> dict[str, object]:
    """``bars`` counts the rows stored whatever their ``kind`` (a tick job's trades too)."""
    return {
        "job_id": summary.job_id.value,
        "kind": kind,
        "state": summary.state.value,
        "resumed": summary.resumed,
        "partitions": summary.partitions_total,
        "partitions_completed": summary.partitions_completed,
        "partitions_skipped": summary.partitions_skipped,
        "partitions_stored": summary.partitions_stored,
        "partitions_failed": len(summary.failures),
        "bars": summary.bars,
        "rejected_rows": summary.rejected,
        "elapsed_seconds": round(summary.elapsed_seconds, 3),
        "bars_per_second": round(summary.bars_per_second),
        "data_dir": str(dataset_root(data_dir)),
        "error": summary.aborted,
        "deadline_passed": summary.deadline_passed,
        "exit_code": summary.exit_code,
        "notes": list(summary.notes),
        "failures": [
            {"symbol": f.symbol, "day": f.day.isoformat(), "error": f.error}
            for f in summary.failures
        ],
    }


def print_summary(summary: JobSummary, data_dir: Path, kind: str = "bars") -> None:
    ok = summary.state is ProcessingState.COMPLETED
    table = Table(
        title=f"Job {summary.job_id} [{'green' if ok else 'red'}]{summary.state.value}[/]"
        + (" (resumed)" if summary.resumed else ""),
        show_header=False,
    )
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row(
        "partitions",
        f"{summary.partitions_completed:,} of {summary.partitions_total:,}"
        + (f" ({summary.partitions_skipped:,} already done)" if summary.partitions_skipped else ""),
    )
    if summary.partitions_stored:
        table.add_row("already in the dataset", f"{summary.partitions_stored:,} (not fetched)")
    table.add_row("failed partitions", f"{len(summary.failures):,}")
    table.add_row(kind, f"{summary.bars:,}")
    table.add_row("rejected rows", f"{summary.rejected:,}")
    table.add_row("elapsed", f"{summary.elapsed_seconds:.2f} s")
    table.add_row(f"{kind}/s", f"{summary.bars_per_second:,.0f}")
    table.add_row(
        "data dir", Text(str(dataset_root(data_dir)))
    )  # literal: a path may hold [brackets]
    console.print(table)
    by_error: dict[str, list[str]] = {}
    for failure in summary.failures:
        by_error.setdefault(failure.error, []).append(f"{failure.symbol} {failure.day}")
    for error, where in by_error.items():
        sample = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        console.print(
            f"[red]{len(where)} partitions failed[/] ({sample}): {escape(error)}", soft_wrap=True
        )
    if summary.deadline_passed:
        console.print(f"[red]{escape(deadline_line(summary))}[/]", soft_wrap=True)
    for note in summary.notes:
        console.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)
    if summary.failures:
        console.print(f"Details: mp jobs show {summary.job_id}")


def deadline_line(summary: JobSummary) -> str:
    left = (
        summary.partitions_total
        - summary.partitions_completed
        - summary.partitions_skipped
        - summary.partitions_stored
        - len(summary.failures)
    )
    return (
        f"The deadline passed with {left:,} partitions not fetched; the next run (mp update, "
        f"or mp jobs resume {summary.job_id}) fetches them"
    )


@click.command()
@click.option(
    "--provider",
    shell_complete=complete_provider,
    required=True,
    help="provider name (see `mp providers`)",
)
@click.option("--symbols", default=None, help="comma-separated symbols, e.g. AAPL,MSFT")
@click.option(
    "--all-symbols",
    is_flag=True,
    help="every symbol the provider has on those days (providers that can list them, e.g. iex)",
)
@click.option("--start", default=None, help="first New York calendar day, YYYY-MM-DD")
@click.option(
    "--end",
    default=None,
    help="last New York calendar day (inclusive), YYYY-MM-DD; default: the last completed "
    "session; with --source both may be left out: the days come from the files",
)
@click.option(
    "--source",
    default=None,
    metavar="PATH_OR_GLOB",
    help="read local files instead of the network (shorthand for -o source=...; e.g. iex captures)",
)
@click.option(
    "--timeframe",
    shell_complete=complete_timeframe,
    default=None,
    help="1m (the default), 5m, 15m, 30m, 1h or 1d: bars of that length",
)
@click.option(
    "--kind",
    type=click.Choice(["bars", "trades", "quotes"]),
    default="bars",
    show_default=True,
    help="what to store: bars, or the trades or quotes beneath them (providers that serve ticks)",
)
@click.option(
    "--session",
    shell_complete=complete_session,
    default="regular",
    show_default=True,
    help="regular (the exchange's session) or extended (04:00-20:00 New York)",
)
@data_dir_option
@click.option("-o", "options", multiple=True, metavar="KEY=VALUE", help="provider setting")
@click.option(
    "--feed",
    shell_complete=complete_feed,
    default=None,
    help="shorthand for -o feed=FEED (providers with feeds)",
)
@batch_size_option
@concurrency_option
@deadline_option
@click.option(
    "--replace-empty",
    is_flag=True,
    help="let days the provider now sends no bars for clear the stored ones (by default the "
    "stored rows are kept, with a note)",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="fetch every partition asked, also those the dataset already holds complete",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="serve Prometheus /metrics on 127.0.0.1:PORT while the job runs",
)
@json_option
@user_errors
@sink_options
@executor_options
def ingest(
    provider: str,
    symbols: str | None,
    all_symbols: bool,
    start: str | None,
    end: str | None,
    source: str | None,
    timeframe: str | None,
    kind: str,
    session: str,
    data_dir: Path,
    options: tuple[str, ...],
    feed: str | None,
    batch_size: int,
    concurrency: int,
    deadline: str | None,
    replace_empty: bool,
    refresh: bool,
    metrics_port: int | None,
    as_json: bool,
    sink: SinkArgs,
    executor: ExecutorArgs,
) -> None:
    """Ingest bars (or trades, or quotes) for SYMBOLS from START to END into the dataset under
    the data dir."""
    if kind != "bars" and timeframe is not None:
        raise InvalidInputError(f"--timeframe is the length of a bar: {kind} have none")
    overrides = parse_overrides(options)
    if feed is not None:
        overrides["feed"] = feed
    if source is not None:
        overrides["source"] = source
    if all_symbols == (symbols is not None):
        raise InvalidInputError("give either --symbols AAPL,MSFT or --all-symbols")
    if start is None and end is not None:
        raise InvalidInputError("--end needs --start (or leave both out, with --source)")
    time_range = None  # without dates the provider says which days its local data covers
    if start is not None:
        first = TimeRange(start, start).start
        last = (
            TimeRange(end, end).end
            if end is not None
            else last_completed_session(provider, Session.parse(session))
        )
        if end is None and last < first:
            raise InvalidInputError(
                f"--start {first} is after the last completed session ({last}): "
                "nothing is final yet; give --end to fetch it anyway"
            )
        time_range = TimeRange(first, last)
    request = IngestRequest(
        provider=provider,
        symbols=Symbol.parse_list(symbols) if symbols is not None else (),
        all_symbols=all_symbols,
        time_range=time_range,
        timeframe=Timeframe.of(kind, timeframe),
        session=Session.parse(session),
        data_dir=data_dir,
        overrides=overrides,
        batch_size=batch_size,
        max_concurrency=concurrency,
        replace_empty=replace_empty,
        refresh=refresh,
        sink=sink.name,
        sink_options=sink.options,
        executor=executor.kind,
        scheduler=executor.scheduler,
        deadline=deadline,
    )
    run_job(
        lambda bus, cancel: run_ingest(request, bus, cancel),
        data_dir,
        as_json,
        metrics_port,
        kind=kind,
    )


def run_job(
    start: Callable[[EventBus, CancelToken], Coroutine[Any, Any, JobSummary]],
    data_dir: Path,
    as_json: bool,
    metrics_port: int | None = None,
    kind: str = "bars",
) -> NoReturn:
    """Run a job with progress and signal handling, print its summary, exit with its status;
    ``kind`` names its rows (``bars``, ``trades``, ``quotes``)."""
    summary = run_with_progress(start, as_json, metrics_port, rows=kind)
    if as_json:
        emit_json(summary_dict(summary, data_dir, kind))
    else:
        print_summary(summary, data_dir, kind)
    if summary.state is ProcessingState.CANCELLED:
        click.echo(
            f"Cancelled. Resume with: mp jobs resume {summary.job_id} --data-dir {data_dir}",
            err=True,
        )
    elif summary.aborted:
        click.echo(f"Error: {summary.aborted}", err=True)
    sys.exit(summary.exit_code)


def run_with_progress(
    start: Callable[[EventBus, CancelToken], Coroutine[Any, Any, T]],
    as_json: bool,
    metrics_port: int | None = None,
    quiet: bool = False,
    rows: str = "bars",
) -> T:
    """Run jobs with one progress display and signal handling; returns what ``start`` returns.

    The first Ctrl-C (or SIGTERM) stops launching work and lets in-flight commits finish; the
    job ends CANCELLED and resumable. A second Ctrl-C exits at once: commits are atomic, so no
    file is torn, and the next run sweeps the temp file an interrupted commit leaves.
    """
    bus = EventBus()
    cancel = CancelToken()

    def announce(event: IngestionJobPlanned) -> None:
        done = event.partitions_total - event.partitions_pending - event.partitions_stored
        if done and not quiet:
            click.echo(
                f"Resuming job {event.job_id}: {done:,} of {event.partitions_total:,} partitions "
                "already committed",
                err=True,
            )

    def on_signal() -> None:
        if cancel.is_set():
            os._exit(130)
        cancel.set()
        click.echo(
            "Stopping: in-flight commits finish (press Ctrl-C again to exit at once)", err=True
        )

    async def main() -> T:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await start(bus, cancel)

    bus.subscribe(IngestionJobPlanned, announce)
    if metrics_port is not None:
        from marketpipe.run.metrics import serve

        try:
            serve(metrics_port)
        except OSError as exc:
            raise InvalidInputError(f"cannot serve metrics on port {metrics_port}: {exc}") from None
    try:
        with ProgressDisplay(bus, enabled=not (as_json or quiet), rows=rows):
            return asyncio.run(main())
    except KeyboardInterrupt:  # before the job's own handler was in place: nothing was running
        click.echo("Interrupted before the job started; nothing was written.", err=True)
        sys.exit(130)
    finally:
        install_stop_handlers()  # the closed loop left SIGTERM at its default (a bare 143)
