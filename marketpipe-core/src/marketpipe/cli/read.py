"""``mp read``: a dataset's bars, adjusted at read time and as of any day, as CSV, Parquet or
JSON."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click

from marketpipe.cli.common import data_dir_option, err_console, user_errors


@click.command("read")
@click.option("--provider", required=True, help="the provider whose bars to read")
@click.option("--symbols", required=True, help="e.g. AAPL,MSFT (a renamed company by any name)")
@click.option("--start", required=True, help="first day, YYYY-MM-DD")
@click.option("--end", required=True, help="last day, YYYY-MM-DD")
@click.option("--timeframe", default=None, help="1m (the default) ... 1d: bars of that length")
@click.option(
    "--kind", type=click.Choice(["bars", "trades", "quotes"]), default="bars", show_default=True,
    help="bars, or the trades or quotes beneath them",
)  # fmt: skip
@click.option("--feed", default=None, help="the feed, when the dataset holds several")
@click.option("--adjustment", default="raw", show_default=True, help="raw, split, dividend or all")
@click.option("--as-of", "as_of", default=None, help="with the actions known on this day")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "parquet", "json"]), default="csv",
    show_default=True,
)  # fmt: skip
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="write here instead of stdout (parquet needs a file)")  # fmt: skip
@data_dir_option
@user_errors
def read_command(
    provider: str,
    symbols: str,
    start: str,
    end: str,
    timeframe: str | None,
    kind: str,
    feed: str | None,
    adjustment: str,
    as_of: str | None,
    fmt: str,
    output: Path | None,
    data_dir: Path,
) -> None:
    """Write the bars (or trades, or quotes) of SYMBOLS from START to END, adjusted as asked
    (CSV on stdout; a trade's conditions as one field, space-separated)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    from marketpipe.dataset.read import read
    from marketpipe.model.errors import InvalidInputError
    from marketpipe.model.schema import flat_lists
    from marketpipe.model.values import Symbol

    if fmt == "parquet" and output is None:
        raise InvalidInputError("--format parquet needs a file: -o FILE")
    result = read(
        data_dir,
        provider=provider,
        symbols=[s.value for s in Symbol.parse_list(symbols)],
        start=start,
        end=end,
        timeframe=timeframe,
        feed=feed,
        adjustment=adjustment,
        as_of=as_of,
        kind=kind,
    )
    table = result.table
    if fmt == "parquet":
        assert output is not None
        pq.write_table(table, output)
    else:
        buffer = io.BytesIO()
        if fmt == "csv":
            csv.write_csv(flat_lists(table), buffer)
        else:
            if kind == "bars":  # minutes: Python's datetimes hold them
                rows = table.to_pylist()
                for row in rows:
                    row["timestamp"] = row["timestamp"].isoformat()
            else:  # nanoseconds, which Python's datetimes cannot hold: Arrow writes them
                for i, field in enumerate(table.schema):
                    if pa.types.is_timestamp(field.type):
                        text = pc.strftime(table.column(i), format="%Y-%m-%dT%H:%M:%S+00:00")
                        table = table.set_column(i, field.name, text)
                rows = table.to_pylist()
            buffer.write(json.dumps({kind: rows, "notes": list(result.notes)}).encode() + b"\n")
        if output is None:
            sys.stdout.buffer.write(buffer.getvalue())
        else:
            output.write_bytes(buffer.getvalue())
    for note in result.notes:
        err_console.print(f"Note: {note}", soft_wrap=True, style="yellow", markup=False)
