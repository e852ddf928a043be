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
        #: The handlers of each event type published so far, in subscription order: a unit's
        #: thousands of partition events each tried every subscriber's type before.
        self._by_type: dict[type, tuple[Handler, ...]] = {}

    def subscribe(self, event_type: type[EventT], handler: Callable[[EventT], None]) -> None:
        """Call ``handler`` for every published event that is an instance of ``event_type``."""
        self._handlers.append((event_type, handler))
        self._by_type.clear()

    def on_flush(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` after each publish, once all its events were handled."""
        self._flushes.append(flush)

    def publish(self, event: DomainEvent) -> None:
        self.publish_all((event,))

    def publish_all(self, events: Iterable[DomainEvent]) -> None:
        """Hand each of ``events`` to its handlers, in order, then run the flushes once."""
        by_type = self._by_type
        for event in events:
            kind = type(event)
            handlers = by_type.get(kind)
            if handlers is None:
                handlers = by_type[kind] = tuple(
                    h for t, h in self._handlers if issubclass(kind, t)
                )
            for handler in handlers:
                try:
                    handler(event)
                except Exception:  # a broken subscriber must not break the job
                    log.exception("event handler %r failed on %s", handler, event.name)
        for flush in list(self._flushes):
            try:
                flush()
            except Exception:  # a broken flush must not break the job
                log.exception("event handler %r failed on flush", flush)
