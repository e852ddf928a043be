"""``mp resample``: higher timeframes derived from stored one-minute bars."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from marketpipe.cli.common import (
    complete_feed,
    complete_provider,
    console,
    data_dir_option,
    emit_json,
    err_console,
    json_option,
    user_errors,
)
from marketpipe.dataset import Selection, run_resample
from marketpipe.ingestion.domain.values import Symbol, Timeframe


@click.command()
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Choice(["5m", "15m", "30m", "1h", "1d"]),
    help="the timeframe to derive",
)
@click.option(
    "--provider", shell_complete=complete_provider, default=None, help="only this provider's series"
)
@click.option("--feed", shell_complete=complete_feed, default=None, help="only series of this feed")
@click.option("--symbols", default=None, help="only these symbols, e.g. AAPL,MSFT")
@data_dir_option
@json_option
@user_errors
def resample(
    target: str,
    provider: str | None,
    feed: str | None,
    symbols: str | None,
    data_dir: Path,
    as_json: bool,
) -> None:
    """Derive TARGET bars from the stored 1-minute series into their own series
    (feed=<feed>-from-1m), rebuilding only days whose minutes changed since.

    Windows start at the regular open (a 1h bar at 09:30); daily bars hold the regular session.
    """
    selection = Selection(
        provider=provider, feed=feed, symbols=Symbol.parse_list(symbols) if symbols else ()
    )
    progress = Progress(
        TextColumn("[bold]resample"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("months"),
        console=err_console,
        disable=as_json,
        transient=True,
    )
    task = progress.add_task("resample", total=None)
    with progress:
        results = run_resample(
            data_dir,
            selection,
            Timeframe.parse(target),
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        emit_json(
            [
                {
                    "source": str(r.source),
                    "target": str(r.target),
                    "partitions": r.partitions,
                    "bars_in": r.bars_in,
                    "bars_out": r.bars_out,
                }
                for r in results
            ]
        )
        return
    for r in results:
        console.print(
            Text(
                f"{r.source} -> {r.target}: {r.partitions:,} days rebuilt, "
                f"{r.bars_in:,} minutes -> {r.bars_out:,} bars"
                if r.partitions
                else f"{r.source} -> {r.target}: up to date"
            )
        )
