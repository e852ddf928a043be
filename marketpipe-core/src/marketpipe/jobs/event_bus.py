"""In-process event bus: handlers run in publish order; one that raises is logged, not fatal.

A subscriber that writes somewhere (the job's event log) may also register a flush, run once
after each :meth:`EventBus.publish` call: a unit's thousands of partition events published
together reach the disk in one write, not one each."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from marketpipe.jobs.events import DomainEvent

log = logging.getLogger(__name__)

EventT = TypeVar("EventT", bound=DomainEvent)
Handler = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[tuple[type[DomainEvent], Handler]] = []
        self._flushes: list[Callable[[], None]] = []

    def subscribe(self, event_type: type[EventT], handler: Callable[[EventT], None]) -> None:
        """Call ``handler`` for every published event that is an instance of ``event_type``."""
        self._handlers.append((event_type, handler))

    def on_flush(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` after each publish, once all its events were handled."""
        self._flushes.append(flush)

    def publish(self, event: DomainEvent) -> None:
        self.publish_all((event,))

    def publish_all(self, events: Iterable[DomainEvent]) -> None:
        """Hand each of ``events`` to its handlers, in order, then run the flushes once."""
        handlers = list(self._handlers)
        for event in events:
            for event_type, handler in handlers:
                if isinstance(event, event_type):
                    self._call(handler, event, event.name)
        for flush in list(self._flushes):
            self._call(flush, None, "flush")

    @staticmethod
    def _call(handler: Callable[..., None], event: DomainEvent | None, what: str) -> None:
        try:
            handler() if event is None else handler(event)
        except Exception:  # a broken subscriber must not break the job
            log.exception("event handler %r failed on %s", handler, what)
