"""``mp status``: per series, then per symbol: what is stored and where the holes are."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from marketpipe.cli.common import (
    console,
    data_dir_option,
    emit_json,
    json_option,
    selection_options,
    user_errors,
)
from marketpipe.dataset.operations import Selection, run_status
from marketpipe.dataset.status import SeriesStatus, SymbolStatus, status_dict


def _span(first: dt.date, last: dt.date) -> str:
    return first.isoformat() if first == last else f"{first}..{last}"


def _listing(items: list[str], limit: int = 6) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


#: A series with more symbols (a whole market) shows those with a gap, up to this many, and a
#: summary line; ``--all`` (or ``--symbols``) shows every one.
SHOWN = 40


def _has_gap(s: SymbolStatus) -> bool:
    return bool(s.missing_sessions or s.partial or s.thin or s.quarantined or s.stale)


def print_status(statuses: list[SeriesStatus], every: bool = False) -> None:
    for status in statuses:
        symbols = list(status.symbols)
        everyone = symbols
        if not symbols:  # asked for, nothing stored yet
            console.print(Text.assemble((str(status.series), "bold"), "  nothing stored yet"))
            _print_unstored(status)
            console.print()
            continue
        first = min(s.first_day for s in symbols)
        last = max(s.last_day for s in symbols)
        console.print(
            Text.assemble(
                (str(status.series), "bold"),
                f"  {len(symbols):,} symbol{'s' if len(symbols) != 1 else ''} · "
                f"{_span(first, last)} · {status.bars:,} {status.series.kind.value}",
            )
        )
        hidden = ""
        if not every and len(symbols) > SHOWN:
            gaps = [s for s in symbols if _has_gap(s)]
            symbols = gaps[:SHOWN]
            whole = len(everyone) - len(gaps)
            hidden = (
                f"{whole:,} symbol(s) whole (no missing, partial or thin day) not listed"
                + (f"; {len(gaps) - SHOWN:,} more with gaps" if len(gaps) > SHOWN else "")
                + f"; totals: {sum(x.missing_sessions for x in everyone):,} missing sessions, "
                f"{sum(len(x.partial) for x in everyone):,} partial and "
                f"{sum(len(x.thin) for x in everyone):,} thin days. Every symbol: mp status --all "
                "(or --json)"
            )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        rows = status.series.kind.value
        for name in ("symbol", "first", "last", "sess.", rows, "miss.", "part.", "thin", "quar."):
            table.add_column(
                name,
                justify="left" if name in ("symbol", "first", "last") else "right",
                no_wrap=True,
                overflow="fold" if name == "symbol" else "ellipsis",
            )
        for s in symbols:
            table.add_row(
                Text(s.symbol),
                s.first_day.isoformat(),
                s.last_day.isoformat(),
                f"{s.sessions:,}",
                f"{s.bars:,}",
                f"[red]{s.missing_sessions:,}[/]" if s.missing_sessions else "0",
                f"[yellow]{len(s.partial)}[/]" if s.partial else "0",
                f"[yellow]{len(s.thin)}[/]" if s.thin else "0",
                f"{s.quarantined:,}",
            )
        if symbols:
            console.print(table)
        if hidden:
            console.print(hidden)
        for s in symbols:
            lines = []
            earlier = [n for n in s.names if n != s.symbol]
            if earlier:
                lines.append(f"formerly {escape(', '.join(earlier))}")
            if s.missing:
                lines.append("missing " + _listing([_span(a, b) for a, b in s.missing]))
            if s.partial:
                lines.append("partial " + _listing([d.isoformat() for d in s.partial]))
            if s.thin:
                lines.append("thin " + _listing([d.isoformat() for d in s.thin]))
            if s.stale:
                lines.append(f"[red]stale[/]: {escape(s.stale)}; mp update restates it")
            if lines:
                console.print(f"  {escape(s.symbol)}: " + "; ".join(lines), soft_wrap=False)
        _print_unstored(status)
        console.print()


def _print_unstored(status: SeriesStatus) -> None:
    """What jobs were asked for and never stored: mp update fetches it."""
    for u in status.unstored:
        days = f"{u.days} day{'s' if u.days != 1 else ''}"
        console.print(
            f"  [red]not stored[/]: {escape(u.symbol)} {days} {_span(u.first_day, u.last_day)}"
            f" (job {u.job_id[:12]}); mp update fetches them",
            soft_wrap=False,
        )


@click.command()
@click.option(
    "--plot",
    "plot_to",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="also draw the coverage picture (symbols x months) to a .png, .svg or .html file",
)
@click.option(
    "--all", "every", is_flag=True, help="every symbol of a large series, not only those with gaps"
)
@data_dir_option
@json_option
@user_errors
@selection_options()
def status(
    selection: Selection,
    every: bool,
    plot_to: Path | None,
    data_dir: Path,
    as_json: bool,
) -> None:
    """What the dataset holds, per series and symbol: days, sessions, bars, and the gaps.

    Missing sessions are counted against the exchange calendar between each symbol's first and
    last stored day; partial days were fetched before they were final; thin days hold
    suspiciously few bars for their session.
    """
    statuses, notes = run_status(data_dir, selection, plot_to)
    if as_json:
        emit_json(
            {**status_dict(statuses), "notes": notes, "plot": str(plot_to) if plot_to else None}
        )
        return
    for note in notes:
        console.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)
    if not statuses:
        console.print(f"No bars stored in {escape(str(data_dir))} for that selection.")
        return
    print_status(statuses, every=every or bool(selection.symbols))
    if plot_to is not None:
        console.print(Text(f"Coverage picture: {plot_to}"))
