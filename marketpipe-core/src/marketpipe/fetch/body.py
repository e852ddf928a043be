"""One answer's body as it arrives: a ``Content-Length`` past the cap refused before a byte is
read, a gzip body inflated (:mod:`marketpipe.fetch.inflate`), the whole refused as soon as it
passes the cap, and the chunks joined once at the end (a page inflated in one piece is not
copied at all; a bytearray grown chunk by chunk copied each 915 KB page of Alpaca trades
twice)."""

from __future__ import annotations

import httpx

from marketpipe.fetch.errors import ResponseTooLargeError
from marketpipe.fetch.inflate import encoded_otherwise, inflater


def too_large(provider: str, cap: int, size: str) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"{provider} sent a body of more than {cap:,} bytes ({size}); refused rather than held "
        "in memory (max_body_bytes)"
    )


class BodyReader:
    """Feed :meth:`add` the chunks of ``response`` (``raw``: its raw chunks, else the ones
    httpx decodes), then take :meth:`body`."""

    def __init__(self, response: httpx.Response, cap: int, provider: str) -> None:
        self.cap, self.provider = cap, provider
        length = response.headers.get("content-length", "")
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        if length.isdigit() and int(length) > cap and not encoded:
            raise too_large(provider, cap, f"Content-Length {int(length):,}")
        self._inflate = inflater(response, cap)
        #: Whether to read the raw chunks (plain, or gzip inflated here) or httpx's decoded ones.
        self.raw = not encoded_otherwise(response)
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self._keep(self._inflate.feed(chunk) if self._inflate else chunk)

    def body(self) -> bytes:
        if self._inflate:
            self._keep(self._inflate.end())
        return b"".join(self.parts)

    def _keep(self, chunk: bytes) -> None:
        if not chunk:  # (inflating gathers the raw chunks first)
            return
        self.parts.append(chunk)
        self.size += len(chunk)
        if self.size > self.cap:
            raise too_large(self.provider, self.cap, f"{self.size:,} so far")
