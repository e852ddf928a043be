"""In-process event bus: handlers run in publish order; one that raises is logged, not fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from marketpipe.jobs.events import DomainEvent

log = logging.getLogger(__name__)

EventT = TypeVar("EventT", bound=DomainEvent)
Handler = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[tuple[type[DomainEvent], Handler]] = []

    def subscribe(self, event_type: type[EventT], handler: Callable[[EventT], None]) -> None:
        """Call ``handler`` for every published event that is an instance of ``event_type``."""
        self._handlers.append((event_type, handler))

    def publish(self, event: DomainEvent) -> None:
        for event_type, handler in list(self._handlers):
            if isinstance(event, event_type):
                try:
                    handler(event)
                except Exception:  # a broken subscriber must not break the job
                    log.exception("event handler %r failed on %s", handler, event.name)
