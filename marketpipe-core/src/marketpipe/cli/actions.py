"""``mp actions``: list the dataset's corporate actions, or fetch them without bars."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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
from marketpipe.model.actions import DIVIDEND_KINDS, SPLIT_KINDS


def _day(value: str | None, what: str) -> dt.date | None:
    from marketpipe.model.errors import InvalidInputError

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{what} must be a date (YYYY-MM-DD), got {value!r}") from None


_DATED = SPLIT_KINDS | DIVIDEND_KINDS | {"forward_split", "reverse_split"}


@click.command()
@click.option(
    "--provider", default=None, help="only this provider's actions (with --fetch: ask it)"
)
@click.option("--symbols", default=None, help="only these symbols (old or new names), e.g. NVDA")
@click.option("--as-of", "as_of", default=None, help="what the ledger knew on this day")
@click.option("--rejected", is_flag=True, help="the records set aside, with the reason")
@click.option("--fetch", is_flag=True, help="ask --provider for the actions of --symbols first")
@click.option("--start", default=None, help="with --fetch: first ex-date (default 2000-01-01)")
@click.option("--end", default=None, help="with --fetch: last ex-date (default today)")
@data_dir_option
@json_option
@user_errors
def actions(
    provider: str | None,
    symbols: str | None,
    as_of: str | None,
    rejected: bool,
    fetch: bool,
    start: str | None,
    end: str | None,
    data_dir: Path,
    as_json: bool,
) -> None:
    """List the dataset's ledger of corporate actions (splits, dividends, renames...)."""
    from marketpipe.dataset.actions import fetch_actions, list_actions
    from marketpipe.model.errors import InvalidInputError
    from marketpipe.model.values import Symbol

    names = [s.value for s in Symbol.parse_list(symbols)] if symbols else None
    fetched = None
    if fetch:
        if not provider:
            raise InvalidInputError("--fetch needs --provider")
        fetched = fetch_actions(
            data_dir,
            provider,
            names or [],
            _day(start, "--start") or dt.date(2000, 1, 1),
            _day(end, "--end"),
        )
    rows = list_actions(
        data_dir, provider=provider, symbols=names, as_of=_day(as_of, "--as-of"), rejected=rejected
    )
    if as_json:
        emit_json({"actions": rows, **({"fetched": fetched} if fetched else {})})
        return
    if fetched:
        console.print(
            f"fetched: {fetched['new']} new, {fetched['corrected']} corrected, "
            f"{fetched['rejected']} set aside"
        )
    columns = [Column("symbol", keep=True), Column("kind", keep=True),
               Column("ex date", keep=True), Column("ratio / rate", 2),
               Column("new symbol", 1), Column("provider", 0)]  # fmt: skip
    table_rows = []
    for row in rows:
        if row["new_rate"] is not None:
            what = f"{row['new_rate']:g}-for-{row['old_rate']:g}"
        else:
            what = f"{row['rate']:g}" if row["rate"] is not None else ""
        # A split or dividend without an ex-date has none to show (a record set aside for
        # it); kinds without one (a rename) carry their effective day.
        ex = row["ex_date"] or ("none" if row["kind"] in _DATED else row["process_date"])
        table_rows.append([Text(row["symbol"]), Text(row["kind"]), Text(str(ex)), Text(what),
                           Text(row["new_symbol"] or ""), Text(row["provider"])])  # fmt: skip
    console.print(fitted_table(columns, table_rows))
    noun = "action" if len(rows) == 1 else "actions"
    console.print(f"{len(rows)} {noun}" + (" set aside" if rejected else ""))
