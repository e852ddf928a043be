"""``mp delete``: remove exactly the selected partitions, rows and catalog entries."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich import box
from rich.table import Table
from rich.text import Text

from marketpipe.cli.common import (
    SinkArgs,
    complete_feed,
    complete_provider,
    complete_timeframe,
    console,
    data_dir_option,
    emit_json,
    json_option,
    sink_options,
    user_errors,
)
from marketpipe.dataset.operations import Selection, SeriesDeletion, plan_delete, run_delete
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import Kind, Symbol, Timeframe, TimeRange


def _plan_dict(plan: list[SeriesDeletion]) -> list[dict[str, object]]:
    return [
        {
            "provider": d.series.provider,
            "feed": d.series.feed,
            "adjustment": d.series.adjustment,
            "timeframe": d.series.timeframe.value,
            "partitions": len(d.partitions),
            "bars": d.bars,
            "symbols": sorted({s for s, _, _ in d.partitions}),
            "first_day": min(day for _, day, _ in d.partitions).isoformat(),
            "last_day": max(day for _, day, _ in d.partitions).isoformat(),
        }
        for d in plan
    ]


@click.command()
@click.option(
    "--provider", shell_complete=complete_provider, required=True, help="the provider whose data go"
)
@click.option("--feed", shell_complete=complete_feed, default=None, help="only this feed's series")
@click.option("--adjustment", default=None, help="only this adjustment's series (raw, split...)")
@click.option(
    "--timeframe",
    shell_complete=complete_timeframe,
    default=None,
    help="only this timeframe's series",
)
@click.option(
    "--kind",
    type=click.Choice(["bars", "trades", "quotes"]),
    default=None,
    help="only series of this kind",
)
@click.option("--symbols", required=True, help="comma-separated symbols, e.g. AAPL,MSFT")
@click.option("--start", default=None, help="first day to delete (default: the first stored)")
@click.option("--end", default=None, help="last day to delete (default: the last stored)")
@click.option("--dry-run", is_flag=True, help="say what would go, delete nothing")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@data_dir_option
@json_option
@user_errors
@sink_options
def delete(
    sink: SinkArgs,
    provider: str,
    feed: str | None,
    adjustment: str | None,
    timeframe: str | None,
    kind: str | None,
    symbols: str,
    start: str | None,
    end: str | None,
    dry_run: bool,
    yes: bool,
    data_dir: Path,
    as_json: bool,
) -> None:
    """Remove exactly the selected (symbol, day) partitions: their rows and catalog entries.

    Each month folder changes atomically. Later ingests and updates fetch them again only if
    asked (mp update fills gaps between a symbol's first and last stored day).
    """
    first = TimeRange(start, start).start if start else None
    last = TimeRange(end, end).end if end else None
    if first and last and last < first:
        raise InvalidInputError(f"--end {last} is before --start {first}: swap them")
    selection = Selection(
        provider=provider,
        feed=feed,
        timeframe=Timeframe.parse(timeframe) if timeframe else None,
        symbols=Symbol.parse_list(symbols),
        kind=Kind.parse(kind) if kind else None,
    )
    plan = [
        d
        for d in plan_delete(data_dir, selection, first, last)
        if adjustment is None or d.series.adjustment == adjustment.strip().lower()
    ]
    partitions = sum(len(d.partitions) for d in plan)
    bars = sum(d.bars for d in plan)
    if not as_json:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for name in ("series", "symbols", "days", "partitions", "bars"):
            table.add_column(name, no_wrap=name != "symbols", overflow="fold")
        for row in _plan_dict(plan):
            table.add_row(
                Text(f"{row['provider']}/{row['feed']}/{row['adjustment']}/{row['timeframe']}"),
                Text(",".join(row["symbols"])),  # type: ignore[arg-type]
                f"{row['first_day']}..{row['last_day']}",
                f"{row['partitions']:,}",
                f"{row['bars']:,}",
            )
        if plan:
            console.print(table)
    if not plan:
        if as_json:
            emit_json({"deleted": False, "partitions": 0, "bars": 0, "series": []})
        else:
            console.print("Nothing stored matches: nothing to delete.")
        return
    if dry_run:
        if as_json:
            emit_json(
                {
                    "deleted": False,
                    "dry_run": True,
                    "partitions": partitions,
                    "bars": bars,
                    "series": _plan_dict(plan),
                }
            )
        else:
            console.print(f"Dry run: {partitions:,} partitions ({bars:,} bars) would be deleted.")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInputError(
                f"this deletes {partitions:,} partitions ({bars:,} bars): add --yes to confirm "
                "(or --dry-run to see what would go)"
            )
        click.confirm(f"Delete {partitions:,} partitions ({bars:,} bars)?", abort=True, err=True)
    removed = run_delete(data_dir, plan, sink.name, sink.options)
    if as_json:
        emit_json(
            {"deleted": True, "partitions": partitions, "bars": removed, "series": _plan_dict(plan)}
        )
    else:
        console.print(f"Deleted {partitions:,} partitions ({removed:,} bars).")
