"""``mp symbols``: the universe, as of a day, from the dataset's instrument master."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from marketpipe.cli.common import (
    Column,
    console,
    data_dir_option,
    emit_json,
    fitted_table,
    json_option,
    user_errors,
)


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.date | dt.datetime):
                row[key] = value.isoformat()
        row.pop("record", None)
    return rows


def _listed(row: dict[str, Any]) -> str:
    first, last = row.get("first_day") or "", row.get("last_day") or ""
    if not first and not last:
        return "" if row.get("active") is not False else "delisted"
    return f"{first}..{last}"


@click.command()
@click.option("--provider", default=None, help="whose instruments (else the one the dataset has)")
@click.option("--as-of", "as_of", default=None, help="the universe of this day (default: today)")
@click.option("--all", "every", is_flag=True, help="every instrument known, delisted included")
@click.option("--traded", is_flag=True, help="only those with bars stored that day")
@click.option("--fetch", is_flag=True, help="ask --provider for its instruments first")
@data_dir_option
@json_option
@user_errors
def symbols(
    provider: str | None,
    as_of: str | None,
    every: bool,
    traded: bool,
    fetch: bool,
    data_dir: Path,
    as_json: bool,
) -> None:
    """List the symbols that existed on a day, under their names of that day (delisted ones
    included), from the instrument master and, for a whole-market dataset, the stored bars."""
    from marketpipe.dataset.universe import (
        fetch_instruments,
        known_instruments,
        stored_providers,
        universe,
    )
    from marketpipe.model.errors import InvalidInputError

    fetched = None
    if fetch:
        if not provider:
            raise InvalidInputError("--fetch needs --provider")
        fetched = fetch_instruments(data_dir, provider)
    if provider is None:
        providers = sorted(set(known_instruments(data_dir, None)["provider"].to_pylist()))
        # No instruments kept: the provider whose data the dataset holds, if it is one (a
        # whole-market dataset tells what each stored day traded).
        holding = providers or stored_providers(data_dir)
        if len(holding) != 1:
            raise InvalidInputError(
                "give --provider: the dataset knows instruments of "
                + (", ".join(providers) if providers else "no provider")
                + (f" and holds data of {', '.join(holding)}" if len(holding) > 1 else "")
                + " (mp symbols --provider P --fetch asks P for its instruments)"
            )
        provider = holding[0]
    if every:
        if as_of:
            raise InvalidInputError("--all lists every instrument; leave out --as-of")
        table = known_instruments(data_dir, provider)
    else:
        table = universe(data_dir, provider=provider, as_of=as_of, traded=traded)
    rows = _plain(table.to_pylist())
    if as_json:
        emit_json({"symbols": rows, **({"fetched": fetched} if fetched else {})})
        return
    if fetched:
        console.print(f"fetched: {fetched['new']} new, {fetched['changed']} changed")
        for line in fetched["left_out"]:  # type: ignore[attr-defined]
            console.print(f"[yellow]left out:[/] {line}")
    columns = [Column("symbol", keep=True), Column("name", 1), Column("type", 2),
               Column("exchange", 3), Column("listed", 4), Column("traded", 5)]  # fmt: skip
    table_rows = [
        [Text(r["symbol"]), Text(r.get("name") or ""), Text(r.get("type") or ""),
         Text(r.get("primary_exchange") or ""), Text(_listed(r)),
         Text({True: "yes", False: "no"}.get(r.get("traded"), ""))]  # type: ignore[arg-type]
        for r in rows
    ]  # fmt: skip
    console.print(fitted_table(columns, table_rows))
    when = "every instrument known" if every else f"listed on {as_of or 'today'}"
    console.print(f"{len(rows)} symbol(s) of {provider}, {when}")
