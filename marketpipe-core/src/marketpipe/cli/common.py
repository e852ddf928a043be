"""Shared CLI pieces: the data-dir option, JSON output, one-line user errors."""

from __future__ import annotations

import functools
import json
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
        type=click.Path(file_okay=False, path_type=Path),
        envvar=DATA_DIR_ENV,
        default=Path("data"),
        show_default=True,
        help=f"dataset root (else ${DATA_DIR_ENV}, else ./data)",
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

    return wrapper  # type: ignore[return-value]
