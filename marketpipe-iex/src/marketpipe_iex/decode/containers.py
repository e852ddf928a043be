"""Packet records out of classic pcap and pcap-ng, found by magic bytes, in bulk.

Each framer takes a buffer that starts at a record boundary and returns where the packets of its
complete records start and how long they are, and how many bytes it consumed; the caller carries
the rest over to the next buffer. The fast path finds candidate records with numpy (pcap-ng:
aligned enhanced-packet-block headers whose trailing length matches; classic pcap: Ethernet
frames carrying IPv4 whose record and IP lengths agree) and accepts a run of them only as a
chain from a known boundary, each ending where the next begins, so a false candidate can never
be taken for a record: at worst it sends one record through the one-at-a-time path.
"""

from __future__ import annotations

import struct

import attrs
import numpy as np

from marketpipe_iex.decode.errors import CaptureFormatError

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
LINKTYPE_ETHERNET = 1

_EMPTY = np.zeros(0, dtype=np.int64)


@attrs.define
class Framed:
    """Packets of one buffer: ``data[i]`` is where packet i's bytes start, ``length[i]`` how many
    of them were captured. ``truncated`` says why the capture ended early (a cut final record,
    corrupt framing); ``stop`` means nothing after ``consumed`` can be read."""

    data: np.ndarray
    length: np.ndarray
    consumed: int
    truncated: str | None = None
    stop: bool = False


@attrs.frozen
class _Candidates:
    """Records found in bulk: each starts at ``start`` and ends at ``end``; its packet bytes are
    ``length`` bytes from ``data``."""

    start: np.ndarray
    end: np.ndarray
    data: np.ndarray
    length: np.ndarray


class _Corrupt(Exception):
    """Framing that cannot be a record: decoding stops there, keeping what came before."""


#: A record longer than this is corrupt framing, not a packet (the largest pcap snap length).
MAX_RECORD = 262_144 + 64


class _Framer:
    """The walk shared by both containers: the longest chain of bulk-found records from the
    current boundary, then one record the slow way (whatever broke the chain), and again."""

    def _candidates(self, buf: bytes) -> _Candidates:
        raise NotImplementedError

    def _step(
        self, buf: bytes, pos: int, data: list[np.ndarray], length: list[np.ndarray]
    ) -> int | None:
        """Read the one record at ``pos``; its end, or ``None`` while it is incomplete."""
        raise NotImplementedError

    def _tail(self, buf: bytes, pos: int, data: list[np.ndarray], length: list[np.ndarray]) -> str:
        """Keep what is usable of a final, incomplete record; say how it was cut."""
        raise NotImplementedError

    #: Set by ``_step`` when the records after it must be found again (pcap-ng byte order).
    _stale = False

    def frame(self, buf: bytes, final: bool) -> Framed:
        found = self._candidates(buf)
        breaks = np.flatnonzero(found.start[1:] != found.end[:-1])
        data: list[np.ndarray] = []
        length: list[np.ndarray] = []
        pos, n = 0, len(buf)
        while True:
            run, end = _chain(found.start, found.end, breaks, pos)
            if len(run):
                data.append(found.data[run])
                length.append(found.length[run])
                pos = end
            try:
                after = self._step(buf, pos, data, length)
            except _Corrupt as exc:
                return _framed(data, length, pos, f"{exc}; decoding stopped there", stop=True)
            if after is None:
                break
            pos = after
            if self._stale:
                self._stale = False
                found = self._candidates(buf)
                breaks = np.flatnonzero(found.start[1:] != found.end[:-1])
        truncated = None
        if final and pos < n:
            truncated = self._tail(buf, pos, data, length)
            pos = n
        return _framed(data, length, pos, truncated)


def _chain(
    starts: np.ndarray, ends: np.ndarray, breaks: np.ndarray, pos: int
) -> tuple[np.ndarray, int]:
    """Candidates that form an unbroken run of records from ``pos``: their indices, and the end.

    ``breaks`` holds every ``k`` where candidate ``k + 1`` does not begin where ``k`` ends.
    """
    i = int(np.searchsorted(starts, pos))
    if i >= len(starts) or starts[i] != pos:
        return _EMPTY, pos
    j = int(np.searchsorted(breaks, i))
    stop = int(breaks[j]) + 1 if j < len(breaks) else len(starts)
    return np.arange(i, stop), int(ends[stop - 1])


def _one(data: list[np.ndarray], length: list[np.ndarray], at: int, size: int) -> None:
    data.append(np.array([at]))
    length.append(np.array([size]))


def _u32(buf: np.ndarray, at: np.ndarray, order: str) -> np.ndarray:
    if not len(at):
        return np.zeros(0, dtype=np.uint32)
    b = np.lib.stride_tricks.sliding_window_view(buf, 4)[at].astype(np.uint32)
    if order == "<":
        value: np.ndarray = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)
    else:
        value = b[:, 3] | (b[:, 2] << 8) | (b[:, 1] << 16) | (b[:, 0] << 24)
    return value


def be16(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    value: np.ndarray = (buf[at].astype(np.int64) << 8) | buf[at + 1]
    return value


class PcapFramer(_Framer):
    """Classic pcap: a 24-byte global header, then 16-byte record headers and packet bytes."""

    header_size = 24

    def __init__(self, header: bytes) -> None:
        if len(header) < 24:
            raise CaptureFormatError("the capture ends inside its pcap global header")
        self.order, self.ts_unit = PCAP_MAGICS[header[:4]]
        self._rec = struct.Struct(self.order + "IIII")
        (linktype,) = struct.unpack_from(self.order + "I", header, 20)
        if linktype & 0xFFFF != LINKTYPE_ETHERNET:
            raise CaptureFormatError(f"pcap link type {linktype} is not Ethernet")
        self.description = f"pcap ({'little' if self.order == '<' else 'big'}-endian, " + (
            "microseconds)" if self.ts_unit == 1_000 else "nanoseconds)"
        )

    def _candidates(self, buf: bytes) -> _Candidates:
        arr = np.frombuffer(buf, dtype=np.uint8)
        n = len(arr)
        if n < 64:
            return _Candidates(_EMPTY, _EMPTY, _EMPTY, _EMPTY)
        # EtherType 0x0800 at either byte alignment: two word compares instead of three byte ones
        even = np.frombuffer(arr, dtype=">u2", count=n // 2)
        odd = np.frombuffer(arr, dtype=">u2", offset=1, count=(n - 1) // 2)
        p = np.sort(
            np.concatenate(
                (np.flatnonzero(even == 0x0800) * 2, np.flatnonzero(odd == 0x0800) * 2 + 1)
            )
        )
        p = p[p + 3 < n]
        p = p[(arr[p + 2] & 0xF0) == 0x40]  # then IPv4
        vlan = np.zeros(len(p), dtype=bool)
        has4 = p >= 4
        vlan[has4] = (arr[p[has4] - 4] == 0x81) & (arr[p[has4] - 3] == 0x00)
        start = np.where(vlan, p - 32, p - 28)
        eth = np.where(vlan, 18, 14)
        ok = (start >= 0) & (p + 6 <= n)
        start, eth, p = start[ok], eth[ok], p[ok]
        ok = start + 16 <= n
        start, eth, p = start[ok], eth[ok], p[ok]
        incl = _u32(arr, start + 8, self.order).astype(np.int64)
        orig = _u32(arr, start + 12, self.order).astype(np.int64)
        ip_len = be16(arr, p + 4)
        ok = (
            (incl == orig)
            & (incl == eth + ip_len)
            & (incl >= 14 + 20 + 8)
            & (start + 16 + incl <= n)
        )
        start, incl = start[ok], incl[ok]
        return _Candidates(start, start + 16 + incl, start + 16, incl)

    def _step(
        self, buf: bytes, pos: int, data: list[np.ndarray], length: list[np.ndarray]
    ) -> int | None:
        if pos + 16 > len(buf):
            return None
        _, _, incl, _ = self._rec.unpack_from(buf, pos)
        if incl > MAX_RECORD:
            raise _Corrupt(f"corrupt pcap record (captured length {incl:,}) at byte {pos:,}")
        if pos + 16 + incl > len(buf):
            return None
        _one(data, length, pos + 16, incl)
        return int(pos + 16 + incl)

    def _tail(self, buf: bytes, pos: int, data: list[np.ndarray], length: list[np.ndarray]) -> str:
        have = len(buf) - pos
        if have < 16:
            return f"the last pcap record header is cut short: {have} of 16 bytes"
        _, _, incl, _ = self._rec.unpack_from(buf, pos)
        _one(data, length, pos + 16, have - 16)
        return f"the last pcap record is cut short: {have} of {16 + incl} bytes"


class PcapNgFramer(_Framer):
    """pcap-ng: blocks of (type, length, body, length), 4-byte aligned, either byte order."""

    header_size = 0

    def __init__(self, header: bytes) -> None:
        self.order = "<"
        self._set_order(header)
        self._stale = False

    def _set_order(self, buf: bytes, pos: int = 0) -> None:
        bom = buf[pos + 8 : pos + 12]
        if bom == b"\x4d\x3c\x2b\x1a":
            order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            order = ">"
        else:
            raise _Corrupt(f"pcap-ng section header without byte-order magic at byte {pos:,}")
        self._stale = order != self.order or not hasattr(self, "_hdr")
        self.order = order
        self._hdr = struct.Struct(self.order + "II")
        self._u32 = struct.Struct(self.order + "I")
        self._u16 = struct.Struct(self.order + "H")
        self.description = f"pcap-ng ({'little' if self.order == '<' else 'big'}-endian)"

    def _candidates(self, buf: bytes) -> _Candidates:
        words = np.frombuffer(buf, dtype=np.dtype(self.order + "u4"), count=len(buf) // 4)
        n = len(words)
        k = np.flatnonzero(words[: max(n - 7, 0)] == 6)
        size = words[k + 1].astype(np.int64)
        ok = (size >= 32) & (size % 4 == 0) & (k + size // 4 <= n)
        k, size = k[ok], size[ok]
        ok = words[k + size // 4 - 1] == size
        k, size = k[ok], size[ok]
        caplen = words[k + 5].astype(np.int64)
        ok = caplen <= size - 32
        k, size, caplen = k[ok], size[ok], caplen[ok]
        starts = k * 4
        return _Candidates(starts, starts + size, starts + 28, caplen)

    def _step(
        self, buf: bytes, pos: int, data: list[np.ndarray], length: list[np.ndarray]
    ) -> int | None:
        if pos + 12 > len(buf):
            return None
        if buf[pos : pos + 4] == PCAPNG_SHB:
            self._set_order(buf, pos)  # a new section may switch byte order
        kind, size = self._hdr.unpack_from(buf, pos)
        if size < 12 or size % 4 or size > MAX_RECORD:
            raise _Corrupt(f"corrupt pcap-ng block (length {size:,}) at byte {pos:,}")
        if pos + size > len(buf):
            return None
        if kind in (6, 2):  # enhanced packet block, obsolete packet block
            (caplen,) = self._u32.unpack_from(buf, pos + 20)
            _one(data, length, pos + 28, min(caplen, size - 32))
        elif kind == 3:  # simple packet block
            (orig,) = self._u32.unpack_from(buf, pos + 8)
            _one(data, length, pos + 12, min(orig, size - 16))
        elif kind == 1:  # interface description
            (linktype,) = self._u16.unpack_from(buf, pos + 8)
            if linktype != LINKTYPE_ETHERNET:
                raise CaptureFormatError(f"pcap-ng interface link type {linktype} is not Ethernet")
        return int(pos + size)

    def _tail(self, buf: bytes, pos: int, data: list[np.ndarray], length: list[np.ndarray]) -> str:
        have = len(buf) - pos
        if have < 8:
            return f"the last pcap-ng block header is cut short: {have} of 8 bytes"
        kind, size = self._hdr.unpack_from(buf, pos)
        if kind in (6, 2) and have >= 28:
            _one(data, length, pos + 28, have - 28)
        return f"the last pcap-ng block is cut short: {have} of {size} bytes"


def _framed(
    data: list[np.ndarray],
    length: list[np.ndarray],
    pos: int,
    truncated: str | None,
    stop: bool = False,
) -> Framed:
    if not data:
        return Framed(_EMPTY, _EMPTY, pos, truncated, stop)
    return Framed(
        np.concatenate(data).astype(np.int64),
        np.concatenate(length).astype(np.int64),
        pos,
        truncated,
        stop,
    )


def framer_for(head: bytes) -> PcapFramer | PcapNgFramer:
    """The framer for a capture whose decompressed bytes begin with ``head``."""
    magic = head[:4]
    if magic in PCAP_MAGICS:
        return PcapFramer(head)
    if magic == PCAPNG_SHB:
        if len(head) < 12:
            raise CaptureFormatError("the capture ends inside its pcap-ng section header")
        try:
            return PcapNgFramer(head)
        except _Corrupt as exc:
            raise CaptureFormatError(str(exc)) from None
    if len(head) < 4:
        raise CaptureFormatError("the file is too short to be a packet capture")
    raise CaptureFormatError(
        f"not a pcap or pcap-ng capture (it starts with bytes {head[:4].hex()}); IEX HIST files "
        "are gzipped pcap or pcap-ng"
    )
