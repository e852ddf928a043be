"""``mp resample``: higher timeframes derived from stored one-minute bars, or bars built from
stored trades."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from marketpipe.cli.common import (
    SinkArgs,
    console,
    count_progress,
    data_dir_option,
    emit_json,
    json_option,
    selection_options,
    sink_options,
    user_errors,
)
from marketpipe.dataset.operations import Selection
from marketpipe.dataset.resample import run_resample
from marketpipe.model.values import Timeframe


@click.command()
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Choice(["1m", "5m", "15m", "30m", "1h", "1d"]),
    help="the timeframe to derive (1m: from trades only)",
)
@click.option(
    "--from",
    "source",
    type=click.Choice(["1m", "trades"]),
    default="1m",
    show_default=True,
    help="derive from the stored 1-minute bars, or build from the stored trades",
)
@data_dir_option
@json_option
@user_errors
@selection_options(timeframe=False)
@sink_options
def resample(
    sink: SinkArgs,
    selection: Selection,
    target: str,
    source: str,
    data_dir: Path,
    as_json: bool,
) -> None:
    """Derive TARGET bars from the stored 1-minute series into their own series
    (feed=<feed>-from-1m), rebuilding only days whose minutes changed since. With --from
    trades, build them from the stored trades (feed=<feed>-from-trades): a canceled trade counts
    for nothing, and the provider's rules say which conditions set a price (docs/storage.md).

    Windows start at the regular open (a 1h bar at 09:30); daily bars hold the regular session.
    """
    progress, advance = count_progress("resample", "months", enabled=not as_json)
    with progress:
        results = run_resample(
            data_dir,
            selection,
            Timeframe.parse(target),
            on_progress=advance,
            sink_name=sink.name,
            sink_options=sink.options,
            source_kind=Timeframe.parse(source),
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
                f"{r.bars_in:,} {'trades' if source == 'trades' else 'minutes'} -> "
                f"{r.bars_out:,} bars"
                if r.partitions
                else f"{r.source} -> {r.target}: up to date"
            )
        )
