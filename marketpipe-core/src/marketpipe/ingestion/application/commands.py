"""The seed's import path of :mod:`marketpipe.run.commands`."""

from marketpipe.run.commands import (
    CreateIngestionJobCommand,
    StartJobCommand,
)

__all__ = [
    "CreateIngestionJobCommand",
    "StartJobCommand",
]
