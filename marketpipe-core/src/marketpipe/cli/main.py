"""``mp``: the MarketPipe command line."""

from __future__ import annotations

import click

from marketpipe.cli.actions import actions
from marketpipe.cli.catalog import plugins, providers, sinks
from marketpipe.cli.compact import compact
from marketpipe.cli.delete import delete
from marketpipe.cli.ingest import ingest
from marketpipe.cli.jobs import jobs
from marketpipe.cli.read import read_command
from marketpipe.cli.resample import resample
from marketpipe.cli.status import status
from marketpipe.cli.update import update
from marketpipe.cli.verify import verify
from marketpipe.model.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mp")
def cli() -> None:
    """MarketPipe: historical market bars into a validated, partitioned Parquet dataset."""


cli.add_command(providers)
cli.add_command(plugins)
cli.add_command(sinks)
cli.add_command(ingest)
cli.add_command(jobs)
cli.add_command(delete)
cli.add_command(compact)
cli.add_command(resample)
cli.add_command(status)
cli.add_command(update)
cli.add_command(verify)
cli.add_command(read_command)
cli.add_command(actions)


def main() -> None:
    cli()
