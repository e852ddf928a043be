"""Decompressed bytes of a capture, in large chunks, read ahead on a second thread.

gzip is recognised by its magic bytes, never by the file name. Decompression uses ISA-L
(``isal``, about 2-3x faster than zlib) when it is installed and zlib otherwise; either releases
the GIL, so a reader thread decompresses the next chunk while the decoder works on this one.
A gzip stream that ends early is reported (``truncated``) after the bytes it did hold.

A damaged gzip keeps what is readable, as ``gzip -dc`` does: when inflating fails, the damaged
member is inflated again from its start with zlib in small steps, and every byte before the
damage is kept (a checksum that does not match loses nothing at all), with a note saying so.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from marketpipe.model.read_ahead import read_ahead

CHUNK = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


def _inflate_module() -> Any:
    """ISA-L's inflate when installed (a dependency, but wheels may be missing), else zlib."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - depends on the platform's wheels
        return zlib
    return isal_zlib


_zlib_impl: Any = _inflate_module()
_INFLATE_ERRORS: tuple[type[Exception], ...] = (
    zlib.error,
    getattr(_zlib_impl, "error", zlib.error),
)


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Chunks:
    """Plain (already decompressed) bytes."""

    def __init__(self, raw: _Readable, chunk: int = CHUNK) -> None:
        self._raw = raw
        self._chunk = chunk
        self.truncated: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        while data := self._raw.read(self._chunk):
            yield data


class CaptureStream:
    """Iterate over the decompressed bytes of ``source``; ``truncated`` says how it ended early.

    ``on_progress(compressed_bytes_read)`` is called as the raw file is consumed, for a progress
    bar in bytes of the file on disk.
    """

    def __init__(
        self,
        source: str | Path | IO[bytes],
        chunk: int = CHUNK,
        on_progress: Callable[[int], None] | None = None,
        read_ahead: int = 2,
    ) -> None:
        self._source = source
        self._chunk = chunk
        self._on_progress = on_progress
        self._read_ahead = read_ahead
        self.truncated: str | None = None
        self.compressed = False

    def _open(self) -> IO[bytes]:
        if isinstance(self._source, (str, Path)):
            return open(self._source, "rb", buffering=0)
        return self._source

    def __iter__(self) -> Iterator[bytes]:
        raw = self._open()
        try:
            counted = _Counting(raw, self._on_progress)
            head = counted.peek(2)
            self.compressed = head == GZIP_MAGIC
            reader = (
                _GzipReader(counted, self._chunk)
                if self.compressed
                else _Chunks(counted, self._chunk)
            )
            yield from read_ahead(iter(reader), self._read_ahead, "marketpipe-iex-inflate")
            self.truncated = reader.truncated
        finally:
            if raw is not self._source:
                raw.close()


class _Counting(io.RawIOBase):
    def __init__(self, raw: IO[bytes], on_progress: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._buffer = b""
        self._total = 0
        self._on_progress = on_progress

    def peek(self, n: int) -> bytes:
        while len(self._buffer) < n:
            more = self._raw.read(n - len(self._buffer))
            if not more:
                break
            self._buffer += more
        return self._buffer[:n]

    @property
    def position(self) -> int:
        """Bytes handed out so far: the offset in the raw file of the next byte read."""
        return self._total

    def read_at(self, offset: int, n: int) -> bytes | None:
        """``n`` raw bytes from ``offset`` (for a second look at a damaged member), or ``None``
        when the source cannot seek."""
        try:
            self._raw.seek(offset)
            return self._raw.read(n) or b""
        except (OSError, AttributeError, io.UnsupportedOperation):
            return None

    def read(self, n: int = -1) -> bytes:
        if self._buffer:
            out, self._buffer = self._buffer, b""
            if n < 0 or len(out) < n:
                out += self._raw.read(-1 if n < 0 else n - len(out)) or b""
        else:
            out = self._raw.read(n) or b""
        self._total += len(out)
        if self._on_progress is not None and out:
            self._on_progress(self._total)
        return out


class _GzipReader:
    """zlib/ISA-L inflate over a raw stream, member after member."""

    def __init__(self, raw: _Counting, chunk: int) -> None:
        self._raw = raw
        self._chunk = chunk
        self.truncated: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        inflater: Any = _zlib_impl.decompressobj(31)
        data = b""
        member_started = False
        member_at = 0  # raw offset where the current member starts
        member_out = 0  # bytes of it given out so far
        while True:
            if not data:
                data = self._raw.read(1 << 20)
                if not data:
                    if member_started and not inflater.eof:
                        try:
                            rest = inflater.flush()  # output zlib still held back
                        except _INFLATE_ERRORS:
                            rest = b""
                        if rest:
                            yield rest
                        self.truncated = "the gzip stream ends before its end marker"
                    return
            member_started = True
            try:
                out = inflater.decompress(data, self._chunk)
                if out:
                    member_out += len(out)
                    yield out
                while inflater.unconsumed_tail and not inflater.eof:
                    out = inflater.decompress(inflater.unconsumed_tail, self._chunk)
                    if out:
                        member_out += len(out)
                        yield out
            except _INFLATE_ERRORS as exc:
                yield from self._salvage(member_at, member_out, exc)
                return
            if inflater.eof:
                data = inflater.unused_data
                member_at = self._raw.position - len(data)
                member_out = 0
                inflater = _zlib_impl.decompressobj(31)
                member_started = False
                if data and data[:2] != GZIP_MAGIC:
                    if data.strip(b"\x00"):
                        self.truncated = "bytes after the end of the gzip stream were ignored"
                    return
            else:
                data = b""

    def _salvage(self, member_at: int, given: int, exc: Exception) -> Iterator[bytes]:
        """Inflate the damaged member again from ``member_at`` with zlib, a little at a time,
        and give out what follows the ``given`` bytes already out, up to the damage."""
        inflater: Any = zlib.decompressobj(31)
        offset, skip, kept = member_at, given, 0
        error: Exception = exc
        while True:
            data = self._raw.read_at(offset, 1 << 16)
            if data is None:  # cannot look again: keep what was given out
                break
            if not data:
                error = EOFError("the gzip stream ends before its end marker")
                break
            offset += len(data)
            checkpoint = inflater.copy()
            try:
                pieces = [inflater.decompress(data)]
            except zlib.error:
                # Again byte by byte from the checkpoint: everything up to the damage comes out.
                inflater, pieces = checkpoint, []
                try:
                    for i in range(len(data)):
                        pieces.append(inflater.decompress(data[i : i + 1]))
                except zlib.error as damage:
                    error = damage
                    data = b""
            out = b"".join(pieces)
            if skip:
                out, skip = out[skip:], max(0, skip - len(out))
            if out:
                kept += len(out)
                yield out
            if not data or inflater.eof:
                break
        text = str(error)
        if "incorrect data check" in text or "incorrect length check" in text:
            self.truncated = (
                "the gzip checksum does not match: the file is damaged somewhere (every byte "
                "it holds was decoded; download it again to be sure)"
            )
        else:
            self.truncated = f"the gzip stream is corrupt ({text}); the bytes before it were kept"
