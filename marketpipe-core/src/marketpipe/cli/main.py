"""``mp``: the MarketPipe command line.

A command's module is imported when that command runs (click's lazy group pattern), so
``mp --version`` or ``mp status`` never pay for pandas, Dask or the ingest pipeline. Signals are
handled from the first instruction: Ctrl-C or SIGTERM while the modules load, or after a job
has finished, is exit 130 with one line, never a traceback or a bare 143.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from marketpipe.cli.signals import install_stop_handlers
from marketpipe.model.secrets import scrubbing_handler
from marketpipe.run.process import tune_for_jobs

#: ``command name -> "module:attribute"``, each module under ``marketpipe.cli``.
COMMANDS = {
    "actions": "actions:actions",
    "compact": "compact:compact",
    "delete": "delete:delete",
    "ingest": "ingest:ingest",
    "jobs": "jobs:jobs",
    "plugins": "catalog:plugins",
    "providers": "catalog:providers",
    "read": "read:read_command",
    "resample": "resample:resample",
    "sinks": "catalog:sinks",
    "status": "status:status",
    "symbols": "symbols:symbols",
    "update": "update:update",
    "verify": "verify:verify",
}


class _OutOfReach:
    """A finder that makes importing ``names`` (and what is under them) fail."""

    def __init__(self, *names: str) -> None:
        self._names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if any(name == n or name.startswith(f"{n}.") for n in self._names):
            raise ModuleNotFoundError("not in mp", name=name)
        return None


#: httpx imports its own command line whenever click, rich and pygments are installed (they
#: are: mp's own), and with it pygments' lexers and rich's syntax highlighting, 30 ms of every
#: command that loads the providers; mp never runs it, and httpx does without it.
_HTTPX_CLI = _OutOfReach("httpx._main")


def _settle_pyarrow() -> None:
    """pyarrow imports pandas (0.9 s) the first time it builds a table, only to ask whether an
    object is a DataFrame; mp never hands it one. Its check is settled here with pandas out of
    reach, so commands start without pandas. Whatever needs pandas later (``to_pandas``, a
    plugin's DataFrame, exchange_calendars) imports it as usual: pyarrow imports it again
    where it must."""
    if "pandas" in sys.modules:
        return
    hidden = _OutOfReach("pandas")
    sys.meta_path.insert(0, hidden)
    try:
        import pyarrow as pa

        pa.table({"settled": [0]})
    finally:
        sys.meta_path.remove(hidden)


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        if not ctx.resilient_parsing:
            _settle_pyarrow()
        module, name = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(f"marketpipe.cli.{module}"), name)
        assert isinstance(command, click.Command)
        return command


def _version() -> str:
    from marketpipe.model.version import __version__

    return __version__


def _print_version(ctx: click.Context, _param: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"mp, version {_version()}")
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def cli() -> None:
    """MarketPipe: historical market bars into a validated, partitioned Parquet dataset."""


def main() -> None:
    try:
        # Inside the try: a Ctrl-C that lands while the handlers are being set (SIGTERM's is,
        # SIGINT's not yet) or the process tuned is an interruption like any other.
        install_stop_handlers()
        tune_for_jobs()  # freed buffers reused, the GIL handed over sooner
        if "httpx" not in sys.modules and _HTTPX_CLI not in sys.meta_path:
            sys.meta_path.insert(0, _HTTPX_CLI)
        # Every log line MarketPipe prints is scrubbed of the secrets this process holds.
        logger = logging.getLogger("marketpipe")
        if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
            logger.addHandler(scrubbing_handler(sys.stderr))
            logger.propagate = False
        # Not click's standalone mode: it turns Ctrl-C into "Aborted!" and exit 1.
        code = cli.main(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
