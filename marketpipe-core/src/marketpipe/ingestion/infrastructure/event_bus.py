"""The seed's import path of :mod:`marketpipe.jobs.event_bus`."""

from marketpipe.jobs.event_bus import (
    EventBus,
    EventT,
    Handler,
    log,
)

__all__ = [
    "EventBus",
    "EventT",
    "Handler",
    "log",
]
