"""The wall clock, pinnable for tests and reproducible runs: ``MARKETPIPE_NOW`` (an ISO-8601
moment with its zone, e.g. ``2024-03-08T21:00:00+00:00``) stands in for the current time."""

from __future__ import annotations

import datetime as dt
import os

from marketpipe.model.errors import InvalidInputError

NOW_ENV = "MARKETPIPE_NOW"


def now() -> dt.datetime:
    """The current moment (aware, UTC), or the pinned one."""
    pinned = os.environ.get(NOW_ENV, "").strip()
    if not pinned:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(pinned)
    except ValueError:
        raise InvalidInputError(
            f"{NOW_ENV}={pinned!r} is not an ISO-8601 moment (2024-03-08T21:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInputError(f"{NOW_ENV}={pinned!r} needs a zone, e.g. +00:00")
    return moment.astimezone(dt.UTC)
