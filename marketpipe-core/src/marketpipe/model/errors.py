"""MarketPipe's error hierarchy.

``MarketPipeError`` is the root. ``UserError`` and its subclasses describe a mistake the user can fix
(bad symbol, unknown provider, missing setting); the CLI prints their message as one line with no
traceback. Anything else that escapes is our bug and keeps its traceback.
"""

from __future__ import annotations


class MarketPipeError(Exception):
    """Root of every error MarketPipe raises on purpose."""


class UserError(MarketPipeError):
    """A mistake in what the user asked for; the message says what to do instead."""


class InvalidInputError(UserError, ValueError):
    """A value (symbol, date, timeframe, setting) that is not acceptable."""


class UnknownProviderError(UserError, LookupError):
    """The provider name is not installed."""

    def __init__(self, name: str, installed: list[str], failed: str | None = None) -> None:
        listing = ", ".join(installed) if installed else "none"
        if failed is not None:
            message = (
                f"provider {name} failed to load: {failed} (reinstall it, or see `mp plugins`); "
                f"installed providers: {listing}"
            )
        else:
            message = (
                f"unknown provider {name!r}; installed providers: {listing} "
                f"(run `mp providers` to see them, `pip install marketpipe-<name>` to add one)"
            )
        super().__init__(message)
        self.name = name
        self.installed = installed


class ProviderNotConfiguredError(UserError):
    """A provider needs settings (usually credentials) that are not set."""


class PluginConflictError(MarketPipeError):
    """Two plugins claim the same name."""


class InvalidStateTransition(MarketPipeError):
    """A job was asked to move to a state it cannot reach from where it is."""


class JobNotFoundError(UserError, LookupError):
    """No job with that id in this data dir."""


class ProviderError(MarketPipeError):
    """A provider failed to deliver data for a unit of work; the partitions record the reason."""


class TemporaryError(MarketPipeError):
    """The provider or the store could not be reached, or kept rate-limiting, past every retry:
    nothing to fix, the same command later should work (exit code 75, EX_TEMPFAIL)."""


class SymbolError(ProviderError):
    """A failure about particular symbols (the provider refused them or cannot read them), not
    about the request as a whole: a unit of several symbols is then tried symbol by symbol, so
    the others still land. Any other failure fails the unit's partitions as they are."""


class JobConflictError(UserError):
    """What was asked of a job does not fit its state (resume a completed job, cancel a
    cancelled one)."""


class JobRunningError(TemporaryError):
    """Another process is running this job, or one with overlapping partitions: nothing to
    fix, the same command after it has finished works (exit 75: a second overlapping
    ``mp update`` from cron waits for the next night)."""


class DataUnavailableError(ProviderError):
    """The provider has no data for these days (not published yet, or never): retrying now or
    asking symbol by symbol cannot help, so the partitions fail at once with this message."""


class StorageError(MarketPipeError):
    """The dataset cannot take a commit as it is (a file in it that cannot be read): the unit's
    partitions fail with this message, which names the file and what to do."""


class StoreFailedError(StorageError):
    """The storage itself failed (an object store that stopped answering through every retry,
    refused our credentials, or lost its bucket): the job stops at once rather than let every
    later unit wait as long, and the same command resumes once the store is back."""


class StoreUnavailableError(StoreFailedError, TemporaryError):
    """The store stopped answering (not a missing bucket or refused credentials, which need a
    person): the same command later should work."""
