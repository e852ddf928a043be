"""``Secret``: a value that never shows itself in a repr, str, log line or error.

Every secret this process has wrapped is remembered (its value only, in memory), so
:func:`scrub` redacts it from any text, and :class:`ScrubFilter` from every log line, whatever
code path the text took: a provider's 500 body that echoes the request's headers included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

_REDACTED = "**********"


class Secret:
    """Holds a credential. ``repr`` and ``str`` are redacted; ask for the value explicitly."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)
        if len(value) >= _SHORTEST:
            _SEEN.add(value)

    def get_secret_value(self) -> str:
        return str(object.__getattribute__(self, "_value"))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret('{_REDACTED}')"

    def __str__(self) -> str:
        return _REDACTED

    def __format__(self, spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.get_secret_value() == self.get_secret_value()

    def __hash__(self) -> int:
        return hash(self.get_secret_value())

    def __bool__(self) -> bool:
        return bool(self.get_secret_value())

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]*(?::[^/\s@]*)?@")
#: Shorter values would redact ordinary words.
_SHORTEST = 4
#: The values of every :class:`Secret` made in this process.
_SEEN: set[str] = set()


def scrub(text: str, secrets: Iterable[Secret | str] = ()) -> str:
    """``text`` with the value of every secret given or made in this process, and the
    ``user:password@`` of any URL, replaced by a redaction mark: for messages that come from
    outside (a provider's error, a URL) before they are shown, logged or stored."""
    values = set(_SEEN)
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, Secret) else secret
        if len(value) >= _SHORTEST:
            values.add(value)
    for value in sorted(values, key=len, reverse=True):  # a longer one holding a shorter first
        if value in text:
            text = text.replace(value, _REDACTED)
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{_REDACTED}@", text)


class ScrubFilter(logging.Filter):
    """A handler's filter that scrubs every record's final text (message, arguments and any
    exception shown with it) before the handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = scrub(message), None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def scrubbing_handler(stream: Any = None, level: int = logging.WARNING) -> logging.Handler:
    """A handler writing plain lines (as Python's last-resort handler does) through
    :class:`ScrubFilter`."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.addFilter(ScrubFilter())
    return handler
