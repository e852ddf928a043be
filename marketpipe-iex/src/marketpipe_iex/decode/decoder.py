"""One streaming pass over a capture: containers, segments, messages, trades; and its report."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import attrs
import numpy as np

from marketpipe_iex.decode.containers import Framed, PcapFramer, PcapNgFramer, framer_for
from marketpipe_iex.decode.errors import CaptureFormatError
from marketpipe_iex.decode.iextp import PROTOCOLS, SEGMENT_HEADER, Messages, messages, segments
from marketpipe_iex.decode.quotes import quote_messages
from marketpipe_iex.decode.stream import CHUNK, CaptureStream
from marketpipe_iex.decode.trades import (
    TRADE_LENGTHS,
    TRADE_REPORT,
    TradeBatch,
    symbol_key,
    trade_messages,
)

NY = "America/New_York"


@attrs.define
class DecodeStats:
    """What a pass saw, and anything wrong with the capture (``problems``)."""

    container: str = ""
    compressed: bool = False
    bytes: int = 0
    packets: int = 0
    other_packets: int = 0
    segments: int = 0
    heartbeats: int = 0
    messages: int = 0
    by_type: np.ndarray = attrs.field(factory=lambda: np.zeros(256, dtype=np.int64))
    trades: int = 0
    breaks: int = 0
    wrong_length_trades: int = 0
    wrong_length_quotes: int = 0
    cut_segments: int = 0
    gaps: int = 0
    missing_messages: int = 0
    resets: int = 0
    truncated: str | None = None
    protocol_id: int | None = None
    trade_layout: int | None = None
    first_segment: dict[str, int] | None = None
    last_segment: dict[str, int] | None = None

    @property
    def feed(self) -> str | None:
        return PROTOCOLS.get(self.protocol_id) if self.protocol_id is not None else None

    @property
    def first_send_time(self) -> int | None:
        return None if self.first_segment is None else self.first_segment["send_time"]

    @property
    def day(self) -> dt.date | None:
        """The New York calendar day of the capture's first segment."""
        if self.first_send_time is None:
            return None
        from zoneinfo import ZoneInfo

        when = dt.datetime.fromtimestamp(self.first_send_time / 1e9, tz=ZoneInfo(NY))
        return when.date()

    def count(self, kind: str) -> int:
        return int(self.by_type[ord(kind)])

    def problems(self) -> list[str]:
        out = []
        if self.truncated:
            out.append(f"truncated: {self.truncated}; everything before it was kept")
        if self.gaps:
            out.append(f"{self.gaps} sequence gap(s), {self.missing_messages:,} message(s) missing")
        if self.resets:
            out.append(f"{self.resets} sequence reset(s) (decoded as new runs)")
        if self.wrong_length_trades:
            out.append(
                f"{self.wrong_length_trades} trade message(s) of an unexpected length skipped "
                f"(expected {self.trade_layout} bytes)"
            )
        if self.wrong_length_quotes:
            out.append(
                f"{self.wrong_length_quotes} quote update(s) of an unexpected length skipped "
                "(expected 42 bytes)"
            )
        if self.cut_segments and not self.truncated:
            out.append(f"{self.cut_segments} segment(s) shorter than their message count")
        return out


def _header_dict(record: np.void) -> dict[str, int]:
    return {name: int(record[name]) for name in SEGMENT_HEADER.names or ()}


@attrs.define
class Chunk:
    """One decoded buffer: its bytes, segments and messages (for tools and tests)."""

    buf: np.ndarray
    segment_header: np.ndarray
    messages: Messages
    first_message: int  # stream index of messages.offset[0]


class CaptureDecoder:
    """Decode ``source`` (a path or binary file; gzip or not; pcap or pcap-ng) in one pass.

    ``trades()`` yields :class:`TradeBatch` es in stream order; ``chunks()`` the lower level.
    ``stats`` fills in as the pass goes and is complete once the iterator is exhausted.
    ``layout`` is the trade report length (38, or 42 for TOPS 1.5); ``None`` takes it from the
    first trade message in the capture.
    """

    def __init__(
        self,
        source: str | Path | IO[bytes],
        *,
        symbols: Iterable[str] | None = None,
        layout: int | None = None,
        chunk_size: int = CHUNK,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        if layout is not None and layout not in TRADE_LENGTHS:
            raise ValueError(f"trade report layout must be 38 or 42 bytes, not {layout}")
        self._source = source
        self._symbols = (
            None
            if symbols is None
            else np.array(sorted({symbol_key(s) for s in symbols}), dtype="<u8")
        )
        self._chunk_size = chunk_size
        self._on_progress = on_progress
        self.stats = DecodeStats(trade_layout=layout)
        self._expected: int | None = None
        self._session: int | None = None

    def chunks(self, stop_after_segments: int | None = None) -> Iterator[Chunk]:
        stream = CaptureStream(self._source, self._chunk_size, self._on_progress)
        framer: PcapFramer | PcapNgFramer | None = None
        carry = b""
        stats = self.stats
        index = 0
        pieces = iter(stream)
        while True:
            piece = next(pieces, None)
            final = piece is None
            buf = carry + piece if piece is not None else carry
            if piece is not None:
                stats.bytes += len(piece)
            if framer is None:
                if not buf and final:
                    if stream.truncated:
                        raise CaptureFormatError(
                            f"the capture holds no readable data: {stream.truncated}"
                        )
                    raise CaptureFormatError("the capture is empty")
                if len(buf) < 24 and not final:
                    carry = buf
                    continue
                framer = framer_for(buf[:24])
                stats.container = framer.description
                stats.compressed = stream.compressed
                buf = buf[framer.header_size :]
            framed: Framed = framer.frame(buf, final)
            stats.container = framer.description
            carry = buf[framed.consumed :]
            if framed.truncated:
                stats.truncated = framed.truncated
            arr = np.frombuffer(buf, dtype=np.uint8)
            segs, other = segments(arr, framed)
            msgs = messages(arr, segs)
            self._account(segs.header, msgs, arr, other, len(framed.data))
            yield Chunk(arr, segs.header, msgs, index)
            index += len(msgs.offset)
            if framed.stop:
                break  # corrupt framing: nothing after it can be found again
            if final or (stop_after_segments is not None and stats.segments >= stop_after_segments):
                break
        if stream.truncated and not stats.truncated:
            stats.truncated = stream.truncated
        elif stream.truncated:
            stats.truncated = f"{stream.truncated}; {stats.truncated}"

    def _account(
        self, header: np.ndarray, msgs: Messages, arr: np.ndarray, other: int, packets: int
    ) -> None:
        stats = self.stats
        stats.packets += packets
        stats.other_packets += other
        stats.cut_segments += msgs.cut
        if not len(header):
            return
        stats.segments += len(header)
        count = header["message_count"].astype(np.int64)
        stats.heartbeats += int(np.count_nonzero(count == 0))
        stats.messages += len(msgs.offset)
        if len(msgs.offset):
            stats.by_type += np.bincount(arr[msgs.offset], minlength=256)
        if stats.first_segment is None:
            stats.first_segment = _header_dict(header[0])
            stats.protocol_id = int(header[0]["protocol_id"])
        stats.last_segment = _header_dict(header[-1])
        first = header["first_sequence"]
        session = header["session_id"].astype(np.int64)
        expected = first + count
        prev_expected = np.empty(len(header), dtype=np.int64)
        prev_session = np.empty(len(header), dtype=np.int64)
        prev_expected[1:], prev_session[1:] = expected[:-1], session[:-1]
        prev_expected[0] = first[0] if self._expected is None else self._expected
        prev_session[0] = session[0] if self._session is None else self._session
        same = prev_session == session
        gap = same & (first > prev_expected)
        stats.gaps += int(np.count_nonzero(gap))
        stats.missing_messages += int((first - prev_expected)[gap].sum())
        stats.resets += int(np.count_nonzero(~same | (first < prev_expected)))
        self._expected = int(expected[-1])
        self._session = int(session[-1])

    def trades(self) -> Iterator[TradeBatch]:
        for chunk in self.chunks():
            batch = self._trades_of(chunk)
            if len(batch):
                yield batch

    def trades_and_quotes(self) -> Iterator[tuple[TradeBatch, np.ndarray]]:
        """One pass for both kinds: each chunk's trade reports and breaks, and its quote
        updates (``QUOTE_UPDATE`` records), in stream order."""
        for chunk in self.chunks():
            quotes, wrong = quote_messages(chunk.buf, chunk.messages, self._symbols)
            self.stats.wrong_length_quotes += wrong
            yield self._trades_of(chunk), quotes

    def _trades_of(self, chunk: Chunk) -> TradeBatch:
        stats = self.stats
        msgs = chunk.messages
        if stats.trade_layout is None and len(msgs.offset):
            kind = chunk.buf[msgs.offset]
            first = np.flatnonzero((kind == ord("T")) | (kind == ord("B")))
            if len(first):
                found = int(msgs.length[first[0]])
                if found not in (38, 42):
                    raise CaptureFormatError(
                        f"the first trade report is {found} bytes long; IEX trade reports "
                        "are 38 bytes (TOPS 1.6, DEEP 1.0) or 42 (TOPS 1.5)"
                    )
                stats.trade_layout = found
        if stats.trade_layout is None:
            return TradeBatch(np.zeros(0, dtype=TRADE_REPORT))
        batch, wrong = trade_messages(chunk.buf, msgs, stats.trade_layout, self._symbols)
        stats.wrong_length_trades += wrong
        breaks = int(np.count_nonzero(batch.is_break))
        stats.breaks += breaks
        stats.trades += len(batch) - breaks
        return batch


def probe(source: str | Path | IO[bytes]) -> DecodeStats:
    """Read just enough of a capture to know its container, feed and day (its first segments)."""
    decoder = CaptureDecoder(source, chunk_size=1 << 16)
    for _ in decoder.chunks(stop_after_segments=1):
        pass
    return decoder.stats


__all__ = ["TRADE_REPORT", "CaptureDecoder", "DecodeStats", "TradeBatch", "probe"]
