"""The job's events as JSON lines: ``<data>/_marketpipe/events/job=<id>.jsonl`` (appended on
every run of the job, so a resumed job's log tells its whole story)."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import logging
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import IO, Any

import attrs

from marketpipe.jobs.event_bus import EventBus
from marketpipe.jobs.events import DomainEvent, IngestionBatchProcessed, IngestionJobStarted
from marketpipe.model.values import IngestionJobId, Symbol
from marketpipe.storage.layout import META_DIR

#: A string as ``json.dumps`` writes it (quoted, escaped, ASCII).
_text = encode_basestring_ascii

_AS_IS = frozenset({int, str, float, bool, type(None)})


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:  # most fields: a count, a name
        return value
    if isinstance(value, Symbol | IngestionJobId):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if attrs.has(type(value)):
        return {name: _plain(getattr(value, name)) for name in _names(type(value))}
    return value


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(kind: type) -> tuple[str, ...]:
    names = _NAMES.get(kind)
    if names is None:
        names = _NAMES[kind] = tuple(f.name for f in attrs.fields(kind))
    return names


def event_record(event: DomainEvent) -> dict[str, Any]:
    """An event as its log line holds it (field by field, by hand rather than
    ``attrs.asdict(recurse=True)``, which took 20 us an event)."""
    return {"event": event.name, **_plain(event)}


def event_log_path(data_dir: Path, job_id: IngestionJobId | str) -> Path:
    return data_dir / META_DIR / "events" / f"job={job_id}.jsonl"


log = logging.getLogger(__name__)


class EventLog:
    """A subscriber that appends every event of one job to its JSON-lines file."""

    def __init__(self, data_dir: Path, job_id: IngestionJobId) -> None:
        self.path = event_log_path(data_dir, job_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._lines: list[str] = []

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(DomainEvent, self.write)
        bus.on_flush(self.flush)

    def write(self, event: DomainEvent) -> None:
        """Keeps the event's line for :meth:`flush` (the bus runs it after each publish)."""
        # One start line per unit (IngestionUnitStarted), not one per partition: a 9.7M-bar job
        # has 25,000 partitions. Subscribers of the bus still get every partition's start.
        if isinstance(event, IngestionJobStarted) and event.symbol is not None:
            return
        if self._file is not None:
            if type(event) is IngestionBatchProcessed:
                self._lines.append(self._processed_line(event))
            else:
                self._lines.append(json.dumps(event_record(event)) + "\n")

    _stamp: tuple[dt.datetime | None, str] = (None, "")

    def _processed_line(self, event: IngestionBatchProcessed) -> str:
        """``json.dumps(event_record(event))`` for the one event of every partition (10,000 a
        whole market's day), written out by hand: the same text (a test compares them) in a
        fifth of the time; a unit's partitions share their moment, whose text is made once."""
        when, iso = self._stamp
        if when is not event.occurred_at:
            iso = event.occurred_at.isoformat()
            self._stamp = (event.occurred_at, iso)
        part = event.partition
        return (
            f'{{"event": "IngestionBatchProcessed", "occurred_at": "{iso}", '
            f'"job_id": {_text(event.job_id.value)}, "symbol": {_text(event.symbol.value)}, '
            f'"bars_count": {int(event.bars_count)}, "partition": {{"symbol": '
            f'{_text(part.symbol.value)}, "trading_date": "{part.trading_date.isoformat()}", '
            f'"path": {_text(part.path)}, "bars_count": {int(part.bars_count)}}}, '
            f'"rejected_count": {int(event.rejected_count)}}}\n'
        )

    def flush(self) -> None:
        """Writes the lines kept, in one write."""
        lines, self._lines = self._lines, []
        if self._file is None or not lines:
            return
        try:
            self._file.write("".join(lines))
            self._file.flush()
        except OSError as exc:  # a full disk: said once, the job goes on (its store decides)
            log.warning(
                "the job's event log %s cannot be written (%s): the job goes on without it",
                self.path,
                exc.strerror or exc,
            )
            self._drop()

    def _drop(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def close(self) -> None:
        self.flush()
        self._drop()
