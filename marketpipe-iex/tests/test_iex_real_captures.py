"""IEX's own captures (../shared/fixtures/iex beside the checkout): every published figure."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from marketpipe_iex.bars import BarBuilder
from marketpipe_iex.decode import CaptureDecoder, symbol_names

FIXTURES = Path(
    os.environ.get("MARKETPIPE_IEX_FIXTURES")
    or Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "iex"
)
SAMPLE = FIXTURES / "20180127_IEXTP1_TOPS1.6.pcap.gz"
FRAGMENT = FIXTURES / "20180103_TOPS1.6_truncated_fragment.pcap"

#: The real captures are data beside the checkout (``../shared/fixtures/iex``), not the
#: project's files: where that folder is absent, their tests say so and skip.
needs_sample = pytest.mark.skipif(
    not SAMPLE.exists() or not FRAGMENT.exists(),
    reason=f"IEX fixture captures not found in {FIXTURES} (set MARKETPIPE_IEX_FIXTURES)",
)
pytestmark = needs_sample


def message_at(path: Path, wanted: set[int]) -> dict[int, bytes]:
    """The bytes of the messages at these stream indexes (0-based), straight from the chunks."""
    found: dict[int, bytes] = {}
    for chunk in CaptureDecoder(path).chunks():
        offsets, lengths = chunk.messages.offset, chunk.messages.length
        for index in wanted:
            local = index - chunk.first_message
            if 0 <= local < len(offsets):
                start = int(offsets[local])
                found[index] = chunk.buf[start : start + int(lengths[local])].tobytes()
    return found


@pytest.fixture(scope="module")
def sample() -> tuple[CaptureDecoder, np.ndarray]:
    decoder = CaptureDecoder(SAMPLE)
    records = np.concatenate([batch.record for batch in decoder.trades()])
    return decoder, records


def test_counts(sample: tuple[CaptureDecoder, np.ndarray]) -> None:
    stats = sample[0].stats
    assert stats.compressed and stats.container == "pcap-ng (little-endian)"
    assert stats.bytes == 10_553_460
    assert stats.messages == 99_871
    assert stats.segments == 57_719 and stats.heartbeats == 7_955
    assert stats.gaps == 0 and stats.resets == 0 and stats.truncated is None
    counts = {chr(i): int(n) for i, n in enumerate(stats.by_type) if n}
    assert counts == {
        "T": 21_672,
        "Q": 41_959,
        "A": 6_020,
        "D": 3,
        "H": 12_509,
        "O": 8_566,
        "P": 9_130,
        "S": 6,
        "X": 6,
    }
    assert stats.breaks == 0 and stats.trades == 21_672 and stats.problems() == []


def test_first_and_last_segment_headers(sample: tuple[CaptureDecoder, np.ndarray]) -> None:
    stats = sample[0].stats
    assert stats.first_segment == {
        "version": 1,
        "protocol_id": 0x8003,
        "channel_id": 1,
        "session_id": 1_150_681_088,
        "payload_length": 0,
        "message_count": 0,
        "stream_offset": 0,
        "first_sequence": 1,
        "send_time": 1_517_058_015_909_382_289,
    }
    last = stats.last_segment
    assert last is not None
    assert (last["payload_length"], last["message_count"], last["stream_offset"]) == (
        0,
        0,
        3_870_321,
    )
    assert (last["first_sequence"], last["send_time"]) == (99_872, 1_517_074_717_381_264_091)
    assert stats.feed == "TOPS" and stats.trade_layout == 38


def test_published_messages() -> None:
    found = message_at(SAMPLE, {34_344, 47_270, 34_268})
    kind, flags, ts, symbol, size, price, trade_id = struct.unpack("<cBq8sIqq", found[34_344])
    assert (kind, flags, symbol.rstrip(), size, price / 1e4, trade_id, ts) == (
        b"T",
        0xC0,
        b"ZXIET",
        100,
        99.97,
        967_187,
        1_517_059_857_193_914_072,
    )
    kind, flags, ts, symbol, bid_size, bid, ask, ask_size = struct.unpack(
        "<cBq8sIqqI", found[47_270]
    )
    assert (kind, flags, symbol.rstrip(), bid_size, bid / 1e4, ask_size, ask / 1e4, ts) == (
        b"Q",
        0,
        b"AUO",
        1_280,
        4.06,
        19_232,
        4.34,
        1_517_065_649_985_331_707,
    )
    kind, event, ts = struct.unpack("<ccq", found[34_268])
    assert (kind, event, ts) == (b"S", b"S", 1_517_058_017_224_122_394)


def test_trades_and_volume_per_symbol(sample: tuple[CaptureDecoder, np.ndarray]) -> None:
    records = sample[1]
    assert len(records) == 21_672
    assert len(np.unique(records["symbol"])) == 38
    assert int(records["size"].sum()) == 55_296_562
    first, last = records[0], records[-1]
    assert symbol_names(np.array([first["symbol"]]))[0] == "ZXIET"
    assert (
        int(first["flags"]),
        int(first["size"]),
        int(first["price"]),
        int(first["trade_id"]),
    ) == (
        0xC0,
        100,
        999_700,
        967_187,
    )
    assert symbol_names(np.array([last["symbol"]]))[0] == "AVP"
    assert (
        int(last["size"]),
        int(last["price"]),
        int(last["trade_id"]),
        int(last["timestamp"]),
    ) == (
        100,
        23_800,
        29_868_321,
        1_517_073_383_878_035_832,
    )


def test_bars_hold_every_trade(sample: tuple[CaptureDecoder, np.ndarray]) -> None:
    builder = BarBuilder()
    for batch in CaptureDecoder(SAMPLE).trades():
        builder.add(batch)
    table = builder.finish().to_table()
    assert pc.sum(table["volume"]).as_py() == 55_296_562
    assert pc.sum(table["trade_count"]).as_py() == 21_672
    assert len(pc.unique(table["symbol"])) == 38
    # per symbol, the bars' volume is the trades' volume
    records = sample[1]
    names = symbol_names(records["symbol"])
    for name in ("ZXIET", "AVP"):
        rows = table.filter(pc.equal(table["symbol"], name))
        assert pc.sum(rows["volume"]).as_py() == int(records["size"][names == name].sum())


def test_truncated_fragment_keeps_its_whole_messages() -> None:
    decoder = CaptureDecoder(FRAGMENT)
    chunks = list(decoder.chunks())
    stats = decoder.stats
    assert not stats.compressed and stats.container == "pcap-ng (little-endian)"
    assert stats.truncated == "the last pcap-ng block is cut short: 1486 of 1532 bytes"
    assert stats.segments == 3 and stats.heartbeats == 1
    assert stats.first_segment is not None
    assert stats.first_segment["send_time"] == 1_514_983_023_517_685_063
    assert stats.messages == 53 + 51
    assert stats.count("T") == 0
    first = message_at(FRAGMENT, {0})[0]
    assert first[:2] == b"SO"
    assert sum(len(c.messages.offset) for c in chunks) == 104
    assert any("truncated" in p for p in stats.problems())
