"""Check the outline of an untrusted body before a fast parser sees it.

pyarrow's JSON reader (26.x) kills the interpreter with SIGSEGV on a body whose first value is
``null``; other top-level values (a number, an array, a string) it refuses with ``ArrowInvalid``.
A provider that decodes pages with it must first know the body is one JSON object: that costs two
byte scans at the ends of the body, not a parse.
"""

from __future__ import annotations

from marketpipe.fetch.errors import MalformedResponseError

_WHITESPACE = frozenset(b" \t\r\n")


def require_json_object(body: bytes, provider: str) -> None:
    """Raise :class:`MalformedResponseError` unless ``body`` starts with ``{`` and ends with
    ``}`` (around whitespace): the outline of one JSON object. Whether the object is whole, and
    alone, is for the parser to confirm (pyarrow counts the values it read)."""
    first, last = 0, len(body) - 1
    while first <= last and body[first] in _WHITESPACE:
        first += 1
    while last >= first and body[last] in _WHITESPACE:
        last -= 1
    if first > last or body[first] != ord("{") or body[last] != ord("}"):
        sample = body[first : first + 20].decode("utf-8", "replace") or "(empty body)"
        raise MalformedResponseError(
            f"{provider} sent a body that is not a JSON object (it starts {sample!r})"
        )
