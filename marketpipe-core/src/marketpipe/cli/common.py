"""Shared CLI pieces: the data-dir option, JSON output, one-line user errors."""

from __future__ import annotations

import functools
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from marketpipe.errors import PluginConflictError, UserError

F = TypeVar("F", bound=Callable[..., Any])

DATA_DIR_ENV = "MARKETPIPE_DATA_DIR"

console = Console()
err_console = Console(stderr=True)


def data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        # Not checked by click (its usage error is three lines): a data dir that is a file, or
        # cannot be made, is one line from ``user_errors`` when it is first used.
        type=click.Path(path_type=Path),
        envvar=DATA_DIR_ENV,
        default=Path("data"),
        show_default=True,
        help=f"dataset root (else ${DATA_DIR_ENV}, else ./data)",
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


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")(func)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def user_errors(func: F) -> F:
    """Turn a user's mistake into one line on stderr and exit code 2; our bugs keep tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (UserError, PluginConflictError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except sqlite3.Error as exc:  # a corrupt, truncated or locked-out job store
            click.echo(
                f"Error: the job store cannot be used ({exc}); check the data dir's "
                "_marketpipe/jobs.sqlite, or use another --data-dir",
                err=True,
            )
            sys.exit(2)
        except OSError as exc:  # the environment: a data dir that is a file, read-only, full
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(f"Error: cannot use{where}: {exc.strerror or exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
