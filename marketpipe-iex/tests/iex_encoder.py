"""A small IEX HIST capture encoder for tests, written from the reference's tables with struct
(not from the decoder): messages, IEX-TP segments, Ethernet/VLAN/IPv4/UDP packets, classic pcap
(both byte orders, micro- or nanosecond times), pcap-ng (both byte orders), gzip or not.

``Capture.message_ends`` records, for every message, the file offset just past its last byte, so
a test can cut the file anywhere and know exactly which messages are whole.
"""

from __future__ import annotations

import datetime as dt
import gzip
import struct
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

import attrs

NY = ZoneInfo("America/New_York")
TOPS, DEEP, DPLS = 0x8003, 0x8004, 0x8005


def ns(day: dt.date, hhmm: str, second: float = 0.0) -> int:
    """New York wall time on ``day`` as ns since the epoch."""
    hour, minute = (int(p) for p in hhmm.split(":"))
    moment = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)
    return int(moment.timestamp()) * 1_000_000_000 + int(second * 1e9)


def _symbol(text: str) -> bytes:
    return text.encode("ascii").ljust(8, b" ")


def trade(
    ts: int,
    symbol: str,
    size: int,
    price: float,
    trade_id: int,
    flags: int = 0,
    kind: bytes = b"T",
    layout: int = 38,
) -> bytes:
    body = struct.pack(
        "<cBq8sIqq", kind, flags, ts, _symbol(symbol), size, round(price * 10_000), trade_id
    )
    return body + b"\x00" * (layout - 38)


def trade_break(
    ts: int, symbol: str, size: int, price: float, trade_id: int, layout: int = 38
) -> bytes:
    return trade(ts, symbol, size, price, trade_id, kind=b"B", layout=layout)


def quote(ts: int, symbol: str, bid: float, ask: float) -> bytes:
    return struct.pack(
        "<cBq8sIqqI", b"Q", 0, ts, _symbol(symbol), 100, round(bid * 1e4), round(ask * 1e4), 200
    )


def system_event(ts: int, code: bytes = b"O") -> bytes:
    return struct.pack("<ccq", b"S", code, ts)


@attrs.define
class Segment:
    messages: list[bytes]
    first_sequence: int
    send_time: int
    session_id: int = 1_150_681_088
    protocol: int = TOPS
    stream_offset: int = 0

    def encode(self) -> tuple[bytes, list[int]]:
        """The segment's bytes and each message's end offset within them."""
        payload = b""
        ends = []
        for message in self.messages:
            payload += struct.pack("<H", len(message)) + message
            ends.append(40 + len(payload))
        header = struct.pack(
            "<BBHIIHHqqq",
            1,
            0,
            self.protocol,
            1,
            self.session_id,
            len(payload),
            len(self.messages),
            self.stream_offset,
            self.first_sequence,
            self.send_time,
        )
        return header + payload, ends


def frame(segment: bytes, vlan: bool = False) -> tuple[bytes, int]:
    """Ethernet (+802.1Q) / IPv4 / UDP around ``segment``; also where the segment starts."""
    udp = struct.pack(">HHHH", 10378, 10378, 8 + len(segment), 0) + segment
    ip = (
        struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            0,
            0,
            64,
            17,
            0,
            bytes([10, 0, 0, 1]),
            bytes([233, 215, 21, 4]),
        )
        + udp
    )
    eth = b"\x01\x00\x5e\x57\x15\x04" + b"\x00\x1b\x17\x00\x01\x02"
    if vlan:
        eth += b"\x81\x00\x00\x64"
    eth += b"\x08\x00"
    return eth + ip, len(eth) + 20 + 8


@attrs.define
class Capture:
    data: bytes
    message_ends: list[int]  # file offsets (of the uncompressed capture)
    messages: list[bytes]
    record_ends: list[int] = attrs.field(factory=list)  # file offsets just past each record


def segments_of(
    messages: Sequence[bytes | None],
    start_time: int,
    per_segment: int = 3,
    first_sequence: int = 1,
    protocol: int = TOPS,
) -> list[Segment]:
    """Pack ``messages`` into segments of ``per_segment`` (``None`` entries make heartbeats)."""
    out: list[Segment] = []
    seq = first_sequence
    batch: list[bytes] = []
    for i, message in enumerate(messages):
        if message is None:
            if batch:
                out.append(Segment(batch, seq, start_time + i * 1000, protocol=protocol))
                seq += len(batch)
                batch = []
            out.append(Segment([], seq, start_time + i * 1000, protocol=protocol))
            continue
        batch.append(message)
        if len(batch) == per_segment:
            out.append(Segment(batch, seq, start_time + i * 1000, protocol=protocol))
            seq += len(batch)
            batch = []
    if batch:
        out.append(Segment(batch, seq, start_time + len(messages) * 1000, protocol=protocol))
    return out


def pcap(
    segments: Iterable[Segment], order: str = "<", nanos: bool = False, vlan: bool = False
) -> Capture:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1))
    ends: list[int] = []
    messages: list[bytes] = []
    records: list[int] = [len(out)]
    for segment in segments:
        body, seg_ends = segment.encode()
        packet, at = frame(body, vlan)
        secs, frac = divmod(segment.send_time, 1_000_000_000)
        frac = frac if nanos else frac // 1000
        out += struct.pack(order + "IIII", secs, frac, len(packet), len(packet))
        base = len(out) + at
        out += packet
        ends += [base + e for e in seg_ends]
        messages += segment.messages
        records.append(len(out))
    return Capture(bytes(out), ends, messages, records)


def _block(order: str, kind: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    size = 12 + len(body)
    return struct.pack(order + "II", kind, size) + body + struct.pack(order + "I", size)


def pcapng(segments: Iterable[Segment], order: str = "<", vlan: bool = False) -> Capture:
    shb = _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(order, 1, struct.pack(order + "HHI", 1, 0, 65535))
    out = bytearray(shb + idb)
    ends: list[int] = []
    messages: list[bytes] = []
    records: list[int] = [len(out)]
    for segment in segments:
        body, seg_ends = segment.encode()
        packet, at = frame(body, vlan)
        ts = segment.send_time // 1000  # default resolution: microseconds
        epb = struct.pack(order + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(packet), len(packet))
        base = len(out) + 8 + len(epb) + at
        out += _block(order, 6, epb + packet)
        ends += [base + e for e in seg_ends]
        messages += segment.messages
        records.append(len(out))
    return Capture(bytes(out), ends, messages, records)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def broken_by(stream: Sequence[tuple[str, tuple]]) -> set[int]:
    """Positions in ``stream`` (``("T" | "B", (ts, symbol, size, price, trade_id, ...))``) of
    the trades its breaks cancel, the plain way: each break cancels the latest earlier trade
    of its symbol and trade id."""
    out: set[int] = set()
    for position, (kind, row) in enumerate(stream):
        if kind == "B":
            for back in range(position - 1, -1, -1):
                k, earlier = stream[back]
                if k == "T" and (earlier[1], earlier[4]) == (row[1], row[4]):
                    out.add(back)
                    break
    return out
