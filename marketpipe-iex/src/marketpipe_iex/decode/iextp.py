"""Ethernet/IPv4/UDP to IEX-TP v1 segments to messages, for every packet of a buffer at once.

The message walk is vectorised across segments: step k reads the k-th message length of every
segment that still has messages, so a buffer costs as many numpy steps as its longest segment
has messages, not one Python step per message.
"""

from __future__ import annotations

import attrs
import numpy as np

from marketpipe_iex.decode.containers import Framed, be16

PROTOCOLS = {0x8003: "TOPS", 0x8004: "DEEP", 0x8005: "DPLS"}  # DPLS: DEEP+

#: IEX-TP v1 segment header, little-endian (see the reference's table).
SEGMENT_HEADER = np.dtype(
    {
        "names": [
            "version",
            "protocol_id",
            "channel_id",
            "session_id",
            "payload_length",
            "message_count",
            "stream_offset",
            "first_sequence",
            "send_time",
        ],
        "formats": ["u1", "<u2", "<u4", "<u4", "<u2", "<u2", "<i8", "<i8", "<i8"],
        "offsets": [0, 2, 4, 8, 12, 14, 16, 24, 32],
        "itemsize": 40,
    }
)


def selected(
    buf: np.ndarray, msgs: Messages, is_kind: np.ndarray, length: int, symbols: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Offsets of the messages ``is_kind`` marks that are ``length`` bytes long, of
    ``symbols`` (symbol keys) only when given, and how many marked had another length. The
    symbol filter reads the 8 symbol bytes (at offset 10 of every such message) before
    anything else, so an unrequested symbol costs one comparison."""
    right = is_kind & (msgs.length == length)
    wrong = int(np.count_nonzero(is_kind)) - int(np.count_nonzero(right))
    at = msgs.offset[right]
    if symbols is not None and len(at):
        keys = gather(buf, at + 10, np.dtype("<u8"))
        at = at[np.isin(keys, symbols)]
    return at, wrong


def gather(buf: np.ndarray, at: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Records of ``dtype`` read at byte offsets ``at`` of ``buf``."""
    if not len(at):
        return np.zeros(0, dtype=dtype)
    # rows of a sliding-window view: a copy of just the wanted bytes, no index matrix
    rows = np.lib.stride_tricks.sliding_window_view(buf, dtype.itemsize)[at]
    records: np.ndarray = rows.view(dtype).ravel()
    return records


@attrs.define
class Segments:
    """The IEX-TP segments of a buffer: where their payload is and their headers."""

    header: np.ndarray  # SEGMENT_HEADER records
    payload: np.ndarray  # byte offset of the first message length
    end: np.ndarray  # byte offset where the segment's captured payload ends


@attrs.define
class Messages:
    """Messages of a buffer in stream order: ``offset[i]`` is message i's first (type) byte."""

    offset: np.ndarray
    length: np.ndarray
    cut: int  # segments whose captured payload ends inside a message


def segments(buf: np.ndarray, packets: Framed) -> tuple[Segments, int]:
    """IEX-TP segments carried by ``packets``; also how many packets carried none."""
    d, size = packets.data, packets.length
    keep = size >= 14 + 20 + 8 + 40
    d, size = d[keep], size[keep]
    ethertype = be16(buf, d + 12)
    vlan = ethertype == 0x8100
    ip = d + np.where(vlan, 18, 14)
    ethertype = np.where(vlan, be16(buf, d + 16), ethertype)
    ok = (ethertype == 0x0800) & ((buf[ip] >> 4) == 4) & (buf[ip + 9] == 17)
    seg = ip + (buf[ip] & 0x0F).astype(np.int64) * 4 + 8
    end = d + size
    ok &= seg + 40 <= end
    seg, end = seg[ok], end[ok]
    header = gather(buf, seg, SEGMENT_HEADER)
    is_iex = (header["version"] == 1) & np.isin(header["protocol_id"], list(PROTOCOLS))
    header, seg, end = header[is_iex], seg[is_iex], end[is_iex]
    payload = seg + 40
    end = np.minimum(end, payload + header["payload_length"].astype(np.int64))
    return Segments(header, payload, end), len(packets.data) - len(seg)


def messages(buf: np.ndarray, segs: Segments) -> Messages:
    """Walk every segment's messages (2-byte length, then the message); whole messages only."""
    count = segs.header["message_count"].astype(np.int64)
    active = np.flatnonzero(count > 0)
    pos = segs.payload[active]
    end = segs.end[active]
    left = count[active]
    found_at: list[np.ndarray] = []
    found_len: list[np.ndarray] = []
    cut = 0
    while len(pos):
        fits = pos + 2 <= end
        length = np.zeros(len(pos), dtype=np.int64)
        length[fits] = buf[pos[fits]].astype(np.int64) | (buf[pos[fits] + 1].astype(np.int64) << 8)
        whole = fits & (pos + 2 + length <= end) & (length > 0)
        found_at.append(pos[whole] + 2)
        found_len.append(length[whole])
        cut += int(np.count_nonzero(~whole))
        pos = pos + 2 + length
        left = left - 1
        more = whole & (left > 0)
        pos, end, left = pos[more], end[more], left[more]
    if not found_at:
        return Messages(np.zeros(0, np.int64), np.zeros(0, np.int64), cut)
    offset = np.concatenate(found_at)
    length = np.concatenate(found_len)
    order = np.argsort(offset, kind="stable")
    return Messages(offset[order], length[order], cut)
