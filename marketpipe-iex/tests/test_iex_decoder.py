"""The decoder against captures built by the test encoder: every container variant, truncation
at every byte, gaps, resets, both trade report layouts."""

from __future__ import annotations

import datetime as dt
import io
import re

import numpy as np
import pytest
from iex_encoder import (
    DEEP,
    Segment,
    gzipped,
    ns,
    pcap,
    pcapng,
    quote,
    segments_of,
    system_event,
    trade,
    trade_break,
)
from marketpipe_iex.decode import CaptureDecoder, CaptureFormatError, probe, symbol_names

DAY = dt.date(2024, 3, 4)


def sample_messages(layout: int = 38) -> list[bytes | None]:
    t = ns(DAY, "09:30")
    return [
        system_event(t - 10**9, b"O"),
        None,
        quote(t, "AAPL", 170.01, 170.05),
        trade(t + 1, "AAPL", 100, 170.02, 1, layout=layout),
        trade(t + 2, "MSFT", 50, 410.5, 2, flags=0x20, layout=layout),
        quote(t + 3, "MSFT", 410.4, 410.6),
        None,
        trade(t + 4, "ZVZZT", 7, 10.0, 3, layout=layout),
        trade_break(t + 5, "ZVZZT", 7, 10.0, 3, layout=layout),
        trade(t + 61 * 10**9, "AAPL", 200, 170.10, 4, layout=layout),
    ]


def decode(data: bytes, **options: object) -> tuple[CaptureDecoder, np.ndarray]:
    decoder = CaptureDecoder(io.BytesIO(data), **options)  # type: ignore[arg-type]
    batches = [b.record for b in decoder.trades()]
    return decoder, np.concatenate(batches) if batches else np.zeros(0)


CONTAINERS = {
    "pcap-le-us": lambda segs, vlan: pcap(segs, "<", False, vlan),
    "pcap-be-us": lambda segs, vlan: pcap(segs, ">", False, vlan),
    "pcap-le-ns": lambda segs, vlan: pcap(segs, "<", True, vlan),
    "pcap-be-ns": lambda segs, vlan: pcap(segs, ">", True, vlan),
    "pcapng-le": lambda segs, vlan: pcapng(segs, "<", vlan),
    "pcapng-be": lambda segs, vlan: pcapng(segs, ">", vlan),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("vlan", [False, True], ids=["eth", "vlan"])
@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_every_container_decodes_the_same_trades(
    container: str, vlan: bool, compress: bool
) -> None:
    capture = CONTAINERS[container](segments_of(sample_messages(), ns(DAY, "09:29")), vlan)
    data = gzipped(capture.data) if compress else capture.data
    decoder, records = decode(data)
    stats = decoder.stats
    assert stats.compressed is compress
    assert stats.container.startswith("pcap-ng" if "pcapng" in container else "pcap (")
    assert stats.messages == 8 and stats.trades == 4 and stats.breaks == 1
    assert stats.heartbeats == 2 and stats.truncated is None and stats.problems() == []
    assert stats.count("Q") == 2 and stats.count("S") == 1 and stats.feed == "TOPS"
    assert stats.day == DAY and stats.trade_layout == 38
    assert list(symbol_names(records["symbol"])) == ["AAPL", "MSFT", "ZVZZT", "ZVZZT", "AAPL"]
    assert records["price"].tolist() == [1_700_200, 4_105_000, 100_000, 100_000, 1_701_000]
    assert records["trade_id"].tolist() == [1, 2, 3, 3, 4]
    assert records["flags"].tolist() == [0, 0x20, 0, 0, 0]
    assert records["type"].tolist() == [ord(c) for c in "TTTBT"]


@pytest.mark.parametrize("container", ["pcap-le-us", "pcap-be-ns", "pcapng-le", "pcapng-be"])
def test_a_cut_anywhere_keeps_every_whole_message_and_says_so(container: str) -> None:
    capture = CONTAINERS[container](segments_of(sample_messages(), ns(DAY, "09:29")), False)
    full = len(capture.data)
    for cut in range(capture.record_ends[0], full):
        decoder = CaptureDecoder(io.BytesIO(capture.data[:cut]))
        for _ in decoder.chunks():
            pass
        whole = sum(1 for end in capture.message_ends if end <= cut)
        assert decoder.stats.messages == whole, f"cut at {cut}"
        at_boundary = cut in capture.record_ends
        assert bool(decoder.stats.truncated) is not at_boundary, f"cut at {cut}"
    decoder = CaptureDecoder(io.BytesIO(capture.data))
    list(decoder.chunks())
    assert decoder.stats.messages == len(capture.messages) and decoder.stats.truncated is None


@pytest.mark.parametrize("container", ["pcap-le-us", "pcapng-be"])
def test_a_cut_inside_the_file_header_is_one_clear_error(container: str) -> None:
    capture = CONTAINERS[container](segments_of(sample_messages(), ns(DAY, "09:29")), False)
    for cut in (1, 5, 11):
        with pytest.raises(CaptureFormatError, match=r"ends inside its|too short"):
            decode(capture.data[:cut])


@pytest.mark.parametrize("container", ["pcap-le-us", "pcapng-le"])
def test_corrupt_framing_mid_file_stops_there_and_keeps_what_came_before(container: str) -> None:
    capture = CONTAINERS[container](segments_of(sample_messages(), ns(DAY, "09:29")), False)
    middle = capture.record_ends[3]
    data = bytearray(capture.data)
    at = middle + (8 if container.startswith("pcap-") else 4)  # the record's length field
    data[at : at + 4] = b"\xff\xff\xff\x7f"
    decoder, _ = decode(bytes(data))
    assert decoder.stats.messages == sum(1 for end in capture.message_ends if end <= middle)
    assert "corrupt" in (decoder.stats.truncated or "") and "stopped" in decoder.stats.truncated


def test_a_pcapng_section_may_switch_byte_order() -> None:
    first = pcapng(segments_of(sample_messages(), ns(DAY, "09:29")), "<")
    second = pcapng(segments_of(sample_messages(), ns(DAY, "09:29")), ">")
    decoder, records = decode(first.data + second.data)
    assert decoder.stats.messages == 2 * len(first.messages) and len(records) == 10
    assert decoder.stats.container == "pcap-ng (big-endian)" and decoder.stats.truncated is None


def test_a_cut_gzip_stream_keeps_what_it_holds() -> None:
    big = sample_messages() * 200
    capture = pcapng(segments_of(big, ns(DAY, "09:29")))
    data = gzipped(capture.data)
    decoder, _ = decode(data[: len(data) // 2])
    assert 0 < decoder.stats.messages < len(capture.messages)
    assert "gzip" in (decoder.stats.truncated or "")


def test_a_corrupt_gzip_member_is_reported_and_what_came_before_kept() -> None:
    capture = pcapng(segments_of(sample_messages() * 200, ns(DAY, "09:29")))
    half = capture.record_ends[len(capture.record_ends) // 2]
    second = bytearray(gzipped(capture.data[half:]))
    second[len(second) // 2 : len(second) // 2 + 64] = b"\xff" * 64
    decoder, _ = decode(gzipped(capture.data[:half]) + bytes(second))
    whole = sum(1 for end in capture.message_ends if end <= half)
    assert whole <= decoder.stats.messages < len(capture.messages)
    assert "corrupt" in (decoder.stats.truncated or "")
    with pytest.raises(CaptureFormatError, match=r"no readable data|not a pcap or pcap-ng"):
        decode(bytes(second))


def test_chunk_boundaries_do_not_matter() -> None:
    capture = pcapng(segments_of(sample_messages() * 300, ns(DAY, "09:29"), per_segment=7))
    _, whole = decode(capture.data)
    for size in (97, 1000, 4093):
        _, pieces = decode(capture.data, chunk_size=size)
        assert np.array_equal(pieces, whole), size


def test_sequence_gaps_and_resets_are_reported_and_decoding_goes_on() -> None:
    t = ns(DAY, "10:00")
    segs = [
        Segment([trade(t, "AAPL", 1, 1.0, 1)], 1, t),
        Segment([trade(t, "AAPL", 1, 1.0, 2)], 2, t),
        Segment([trade(t, "AAPL", 1, 1.0, 3)], 5, t),  # 3 and 4 missing
        Segment([], 6, t),
        Segment([trade(t, "AAPL", 1, 1.0, 4)], 1, t),  # reset to 1
        Segment([trade(t, "AAPL", 1, 1.0, 5)], 2, t),
    ]
    decoder, records = decode(pcap(segs).data)
    stats = decoder.stats
    assert (stats.gaps, stats.missing_messages, stats.resets) == (1, 2, 1)
    assert records["trade_id"].tolist() == [1, 2, 3, 4, 5]
    assert any("gap" in p for p in stats.problems()) and any("reset" in p for p in stats.problems())


def test_tops_1_5_trade_reports_are_42_bytes() -> None:
    capture = pcap(segments_of(sample_messages(layout=42), ns(DAY, "09:29")))
    decoder, records = decode(capture.data)
    assert decoder.stats.trade_layout == 42 and len(records) == 5
    assert records["price"].tolist()[0] == 1_700_200
    decoder, records = decode(capture.data, layout=38)  # told 1.6: the lengths disagree
    assert len(records) == 0 and decoder.stats.wrong_length_trades == 5
    assert "unexpected length" in decoder.stats.problems()[0]


def test_symbol_filter_keeps_only_those_symbols() -> None:
    _, records = decode(
        pcapng(segments_of(sample_messages(), ns(DAY, "09:29"))).data, symbols=["AAPL"]
    )
    assert list(symbol_names(records["symbol"])) == ["AAPL", "AAPL"]


def test_feed_and_day_come_from_the_content() -> None:
    capture = pcapng(segments_of(sample_messages(), ns(DAY, "20:30"), protocol=DEEP))
    stats = probe(io.BytesIO(gzipped(capture.data)))
    assert (stats.feed, stats.day, stats.compressed) == ("DEEP", DAY, True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"PK\x03\x04" + b"\x00" * 40, "not a pcap or pcap-ng"),
        (b"\xd4\xc3\xb2\xa1" + b"\x00" * 16 + b"\x71\x00\x00\x00", "not Ethernet"),
    ],
)
def test_what_is_not_a_capture_is_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(CaptureFormatError, match=message):
        decode(data)


def test_non_iex_packets_are_skipped() -> None:
    t = ns(DAY, "10:00")
    capture = pcap([Segment([trade(t, "AAPL", 1, 1.0, 1)], 1, t)])
    # append an ARP-like record: ethertype 0x0806
    import struct

    arp = b"\xff" * 6 + b"\x00" * 6 + b"\x08\x06" + b"\x00" * 28
    data = capture.data + struct.pack("<IIII", 0, 0, len(arp), len(arp)) + arp
    data += capture.data[24:]  # and the segment again
    decoder, records = decode(data)
    assert decoder.stats.other_packets == 1 and len(records) == 2


def _intact_prefix(data: bytes, damaged_at: int) -> int:
    """Decompressed bytes that the compressed bytes before ``damaged_at`` give out: what any
    reader of the damaged file (``gzip -dc`` too) gets right."""
    import zlib

    return len(zlib.decompressobj(31).decompress(data[:damaged_at]))


@pytest.mark.parametrize("where", [-8, -7, -5, -4, -1])  # CRC32 bytes, then ISIZE bytes
def test_a_gzip_checksum_error_loses_nothing_and_says_so(where: int) -> None:
    capture = pcapng(segments_of(sample_messages() * 400, ns(DAY, "09:29")))
    data = bytearray(gzipped(capture.data))
    data[where] ^= 0x5A
    decoder, _ = decode(bytes(data))
    assert decoder.stats.messages == len(capture.messages)
    assert "checksum does not match" in (decoder.stats.truncated or "")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("chunk_size", [1 << 12, 1 << 20])
def test_a_damaged_byte_mid_gzip_keeps_every_whole_message_before_it(
    fraction: float, chunk_size: int
) -> None:
    capture = pcapng(segments_of(sample_messages() * 3000, ns(DAY, "09:29")))
    data = bytearray(gzipped(capture.data))
    at = int(len(data) * fraction)
    readable = _intact_prefix(bytes(data), at)
    data[at : at + 8] = b"\xde\xad\xbe\xef" * 2
    assert 0 < readable < len(capture.data)
    whole = sum(1 for end in capture.message_ends if end <= readable)
    decoder, _ = decode(bytes(data), chunk_size=chunk_size)
    # Every message before the damage is kept; what inflates after it is garbage that the
    # framing or inflate stops at, or that the checksum gives away, with a note.
    assert decoder.stats.messages >= whole - 1
    assert re.search("corrupt|checksum does not match", decoder.stats.truncated or "")
