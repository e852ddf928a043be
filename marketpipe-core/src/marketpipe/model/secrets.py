"""``Secret``: a value that never shows itself in a repr, str, log line or error."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_REDACTED = "**********"


class Secret:
    """Holds a credential. ``repr`` and ``str`` are redacted; ask for the value explicitly."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

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


def scrub(text: str, secrets: Iterable[Secret | str] = ()) -> str:
    """``text`` with every given secret's value, and the ``user:password@`` of any URL, replaced
    by a redaction mark: for messages that come from outside (a provider's error, a URL) before
    they are shown, logged or stored."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, Secret) else secret
        if len(value) >= 4:  # shorter values would redact ordinary words
            text = text.replace(value, _REDACTED)
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{_REDACTED}@", text)
