"""Shared CLI pieces: the data-dir option, JSON output, one-line user errors."""

from __future__ import annotations

import errno
import functools
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
from click.shell_completion import CompletionItem
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from marketpipe.model.errors import (
    PluginConflictError,
    ProviderError,
    StorageError,
    TemporaryError,
    UserError,
)
from marketpipe.run.outcome import EXIT_TEMPFAIL

F = TypeVar("F", bound=Callable[..., Any])

DATA_DIR_ENV = "MARKETPIPE_DATA_DIR"

console = Console()
err_console = Console(stderr=True)


def _data_dir(_ctx: Any, _param: Any, value: str) -> Path:
    """A folder, or ``s3://bucket/prefix`` (its local state folder: see marketpipe.storage.location)."""
    from marketpipe.storage.location import local_root

    try:
        return local_root(value)
    except (UserError, OSError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


def data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        # Not checked by click (its usage error is three lines): a data dir that is a file, or
        # cannot be made, is one line from ``user_errors`` when it is first used.
        type=str,
        callback=_data_dir,
        envvar=DATA_DIR_ENV,
        default="data",
        show_default=True,
        help=f"dataset root: a folder or s3://bucket/prefix (else ${DATA_DIR_ENV}, else ./data)",
    )(func)


def batch_size_option(func: F) -> F:
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=100_000,
        show_default=True,
        help="about this many bars per unit of work (memory per in-flight unit)",
    )(func)


def concurrency_option(func: F) -> F:
    return click.option(
        "--concurrency",
        type=click.IntRange(1, 64),
        default=2,
        show_default=True,
        help="units in flight at once",
    )(func)


def deadline_option(func: F) -> F:
    return click.option(
        "--deadline",
        default=None,
        metavar="DURATION",
        help="end the run by then (90m, 6h; else $MARKETPIPE_DEADLINE; 12h)",
    )(func)


@attrs.frozen
class Column:
    """A table column: ``keep`` columns are never dropped; the others go, lowest ``priority``
    first, when the table would be wider than the terminal (or 80 columns when piped)."""

    name: str
    priority: int = 0
    keep: bool = False
    justify: str = "left"


def fitted_table(columns: list[Column], rows: list[list[Any]], **options: Any) -> Table:
    """A table that reads well in any width: whole cells, columns dropped in priority order
    instead of every column squeezed into wrapped fragments."""
    shown = list(columns)
    while True:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, **options)
        for column in shown:
            table.add_column(column.name, no_wrap=True, justify=column.justify)  # type: ignore[arg-type]
        index = [columns.index(c) for c in shown]
        for row in rows:
            table.add_row(*(row[i] for i in index))
        width = Measurement.get(console, console.options.update_width(10_000), table).maximum
        droppable = [c for c in shown if not c.keep]
        if width <= console.width or not droppable:
            return table
        shown.remove(min(droppable, key=lambda c: c.priority))


def _matching(values: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(v) for v in values if v.startswith(incomplete.lower())]


def complete_provider(_ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    """Shell completion (``_MP_COMPLETE``): the installed providers."""
    from marketpipe.plugins.host import get_plugin_host

    return _matching(sorted(get_plugin_host().providers()), incomplete)


def complete_timeframe(_ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    from marketpipe.model.values import Timeframe

    return _matching([t.value for t in Timeframe.bars()], incomplete)


def complete_session(_ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    return _matching(["regular", "extended"], incomplete)


#: Feeds of the providers shipped here; a plugin's own are accepted too (feeds are free text).
KNOWN_FEEDS = ["iex", "sip", "delayed_sip", "otc", "boats", "overnight", "tops", "deep", "dpls"]


def complete_feed(_ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    return _matching(KNOWN_FEEDS, incomplete)


def selection_options(*, timeframe: bool = True, symbols: bool = True) -> Callable[[F], F]:
    """``--provider``, ``--feed`` (and ``--timeframe``, ``--symbols``), handed to the command
    as one ``selection`` (:class:`marketpipe.dataset.operations.Selection`). Put it below ``user_errors``,
    so a bad value is one line."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from marketpipe.dataset.operations import Selection
            from marketpipe.model.values import Kind, Symbol, Timeframe

            chosen_tf = kwargs.pop("timeframe", None)
            chosen_kind = kwargs.pop("kind", None)
            chosen_symbols = kwargs.pop("symbols", None)
            kwargs["selection"] = Selection(
                provider=kwargs.pop("provider"),
                feed=kwargs.pop("feed"),
                timeframe=Timeframe.parse(chosen_tf) if chosen_tf else None,
                symbols=Symbol.parse_list(chosen_symbols) if chosen_symbols else (),
                kind=Kind.parse(chosen_kind) if chosen_kind else None,
            )
            return func(*args, **kwargs)

        options = [
            click.option(
                "--provider",
                shell_complete=complete_provider,
                default=None,
                help="only this provider's series",
            ),
            click.option(
                "--feed", shell_complete=complete_feed, default=None, help="only this feed's series"
            ),
        ]
        if timeframe:
            options.append(
                click.option(
                    "--timeframe",
                    shell_complete=complete_timeframe,
                    default=None,
                    help="only this timeframe's series (1m ... 1d)",
                )
            )
            options.append(
                click.option(
                    "--kind",
                    type=click.Choice(["bars", "trades", "quotes"]),
                    default=None,
                    help="only series of this kind",
                )
            )
        if symbols:
            options.append(
                click.option("--symbols", default=None, help="only these symbols, e.g. AAPL,MSFT")
            )
        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate


def complete_sink(_ctx: Any, _param: Any, incomplete: str) -> list[CompletionItem]:
    """Shell completion (``_MP_COMPLETE``): the installed sinks."""
    from marketpipe.plugins.host import get_plugin_host

    return _matching(sorted(get_plugin_host().sinks()), incomplete)


@attrs.frozen
class SinkArgs:
    """``--sink`` and ``--sink-option``: ``name`` is ``None`` when not given (the dataset's own
    sink, else ``MARKETPIPE_SINK``, else the config file's, else parquet)."""

    name: str | None = None
    options: dict[str, str] = attrs.field(factory=dict)


def sink_options(func: F) -> F:
    """``--sink NAME`` and ``--sink-option KEY=VALUE``, handed to the command as ``sink``
    (:class:`SinkArgs`). Put it below ``user_errors``, so a bad value is one line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from marketpipe.plugins.settings import parse_overrides

        name = kwargs.pop("sink_name")
        pairs = kwargs.pop("sink_pairs")
        kwargs["sink"] = SinkArgs(name, parse_overrides(pairs, flag="--sink-option"))
        return func(*args, **kwargs)

    decorated: Any = click.option(
        "--sink-option",
        "sink_pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="sink setting (see mp sinks)",
    )(wrapper)
    decorated = click.option(
        "--sink",
        "sink_name",
        default=None,
        shell_complete=complete_sink,
        help="storage sink of a new dataset (default: parquet; else $MARKETPIPE_SINK)",
    )(decorated)
    return decorated  # type: ignore[no-any-return]


def count_progress(
    label: str, unit: str, enabled: bool
) -> tuple[Progress, Callable[[int, int], None]]:
    """A progress line for a long operation over countable things (folders, months), and the
    ``(done, total)`` callback that moves it."""
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        console=err_console,
        disable=not enabled,
        transient=True,
    )
    task = progress.add_task(label, total=None)
    return progress, lambda done, total: progress.update(task, completed=done, total=total)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")(func)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _where() -> str:
    """The data dir of the command running (for a message about its disk)."""
    context = click.get_current_context(silent=True)
    data_dir = context.params.get("data_dir") if context is not None else None
    return str(data_dir) if data_dir is not None else "the data dir"


def user_errors(func: F) -> F:
    """Turn a user's mistake into one line on stderr and exit code 2; our bugs keep tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TemporaryError as exc:  # a provider or store out of reach: try again later
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_TEMPFAIL)
        except (UserError, PluginConflictError, StorageError) as exc:
            # StorageError: a damaged or foreign file in the dataset, named with what to do.
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except ProviderError as exc:  # a provider that did not deliver, outside a job
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except sqlite3.Error as exc:  # a corrupt, truncated or locked-out job store or catalog
            if "full" in str(exc):
                click.echo(
                    f"Error: the disk of {_where()} is full ({exc}): free some space, then "
                    "run the same command; the job resumes where it stopped",
                    err=True,
                )
                sys.exit(2)
            click.echo(
                f"Error: the job store cannot be used ({exc}); check the data dir's "
                "_marketpipe/jobs.sqlite and catalog.sqlite, or use another --data-dir",
                err=True,
            )
            sys.exit(2)
        except OSError as exc:  # the environment: a data dir that is a file, read-only, full
            where = f" {exc.filename}" if exc.filename else ""
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                click.echo(
                    f"Error: no room to write{where} ({exc.strerror}): free some space, then "
                    "run the same command; the job resumes where it stopped",
                    err=True,
                )
                sys.exit(2)
            click.echo(f"Error: cannot use{where}: {exc.strerror or exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@attrs.frozen
class ExecutorArgs:
    """``--executor`` and ``--scheduler`` (``None`` when not given: as configured, else local)."""

    kind: str | None = None
    scheduler: str | None = None


def executor_options(func: F) -> F:
    """``--executor local|dask`` and ``--scheduler ADDRESS``, handed to the command as
    ``executor`` (:class:`ExecutorArgs`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["executor"] = ExecutorArgs(kwargs.pop("executor_kind"), kwargs.pop("scheduler"))
        return func(*args, **kwargs)

    decorated: Any = click.option(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="Dask scheduler to run units on (else $MARKETPIPE_DASK_SCHEDULER)",
    )(wrapper)
    decorated = click.option(
        "--executor",
        "executor_kind",
        type=click.Choice(["local", "dask"]),
        default=None,
        help="where units run: here, or on Dask workers (else $MARKETPIPE_EXECUTOR; local)",
    )(decorated)
    return decorated  # type: ignore[no-any-return]
