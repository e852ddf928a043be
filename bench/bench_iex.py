"""IEX HIST decode benchmark: trades to minute bars for every symbol, against `gzip -dc`.

    python bench/bench_iex.py [--sample ../shared/fixtures/iex/20180127_IEXTP1_TOPS1.6.pcap.gz]
                              [--copies 50] [--repeat 3] [--container pcapng|pcap]

Builds a capture of at least 500 MB uncompressed from IEX's real sample day: its packets repeated
``--copies`` times, each copy's send times, message timestamps and sequence numbers shifted so they
keep rising (a decoder sees one long, gap-free session), gzipped with `gzip -6` as IEX ships them.
Then, in the same run and alternating, the median of ``--repeat`` runs of:

- `gzip -dc FILE > /dev/null` (the baseline: just reading the file);
- MarketPipe: decode every trade and build every symbol's one-minute bars (an Arrow table), in a
  child process whose peak RSS is measured; also with a one-symbol filter (what unrequested
  symbols cost), and on a quarter-size capture (peak RSS must not grow with the file).

Prints the figures and ratios (decode / gzip). Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SAMPLE = (
    Path(__file__).resolve().parents[2] / "shared/fixtures/iex/20180127_IEXTP1_TOPS1.6.pcap.gz"
)


def _fields(raw: bytes) -> tuple[bytes, bytes, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Header blocks, packet blocks, and offsets (within the packet blocks) of every send time,
    first sequence number and message timestamp; the time span and message count."""
    pos = 0
    header_end = None
    send_at: list[int] = []
    seq_at: list[int] = []
    ts_at: list[int] = []
    first_time = last_time = None
    messages = 0
    while pos + 8 <= len(raw):
        kind, size = struct.unpack_from("<II", raw, pos)
        if kind == 6:
            if header_end is None:
                header_end = pos
            data = pos + 28
            seg = data + 14 + (raw[data + 14] & 0x0F) * 4 + 8
            count = struct.unpack_from("<H", raw, seg + 14)[0]
            send = struct.unpack_from("<q", raw, seg + 32)[0]
            first_time = send if first_time is None else first_time
            last_time = send
            send_at.append(seg + 32)
            seq_at.append(seg + 24)
            at = seg + 40
            for _ in range(count):
                (length,) = struct.unpack_from("<H", raw, at)
                ts_at.append(at + 2 + 2)
                at += 2 + length
            messages += count
        pos += size
    assert header_end is not None and first_time is not None and last_time is not None
    base = header_end

    def rel(offsets: list[int]) -> np.ndarray:
        return np.array(offsets, dtype=np.int64) - base

    span = last_time - first_time + 60_000_000_000
    return raw[:base], raw[base:], rel(send_at), rel(seq_at), rel(ts_at), span, messages


def _shift(buf: np.ndarray, offsets: np.ndarray, by: int) -> None:
    idx = offsets[:, None] + np.arange(8)
    values = buf[idx].copy().view("<i8").ravel() + by
    buf[idx] = values.view(np.uint8).reshape(-1, 8)


def _as_pcap(body: bytes) -> list[tuple[int, int]]:
    """(packet data offset, captured length) of each enhanced packet block of ``body``."""
    out, pos = [], 0
    while pos + 8 <= len(body):
        kind, size = struct.unpack_from("<II", body, pos)
        if kind == 6:
            out.append((pos + 28, struct.unpack_from("<I", body, pos + 20)[0]))
        pos += size
    return out


def build(sample: Path, copies: int, out: Path, container: str = "pcapng") -> int:
    raw = gzip.decompress(sample.read_bytes())
    header, body, send_at, seq_at, ts_at, span, messages = _fields(raw)
    packets = _as_pcap(body) if container == "pcap" else []
    plain = out.with_suffix("")
    with open(plain, "wb") as fh:
        # classic pcap: little-endian, nanosecond times, Ethernet
        fh.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1) if packets else header)
        for k in range(copies):
            buf = np.frombuffer(body, dtype=np.uint8).copy()
            if k:
                _shift(buf, send_at, k * span)
                _shift(buf, ts_at, k * span)
                _shift(buf, seq_at, k * messages)
            if packets:
                data = buf.tobytes()
                fh.write(
                    b"".join(
                        struct.pack("<IIII", 0, 0, n, n) + data[at : at + n] for at, n in packets
                    )
                )
            else:
                fh.write(buf.tobytes())
    size = plain.stat().st_size
    subprocess.run(["gzip", "-6", "-f", str(plain)], check=True)
    return size


def child(path: str, symbol: str | None) -> None:
    from marketpipe_iex.bars import BarBuilder
    from marketpipe_iex.decode import CaptureDecoder

    started = time.perf_counter()
    decoder = CaptureDecoder(path, symbols=[symbol] if symbol else None)
    builder = BarBuilder()
    for batch in decoder.trades():
        builder.add(batch)
    table = builder.finish().to_table()
    elapsed = time.perf_counter() - started
    stats = decoder.stats
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "bars": table.num_rows,
                "trades": stats.trades,
                "messages": stats.messages,
                "problems": stats.problems(),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(path: Path, symbol: str | None = None) -> dict:
    args = [sys.executable, __file__, "--child", str(path)] + (
        ["--symbol", symbol] if symbol else []
    )
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def gunzip_seconds(path: Path) -> float:
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["gzip", "-dc", str(path)], stdout=sink, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--container", choices=["pcapng", "pcap"], default="pcapng")
    parser.add_argument("--child", default=None)
    parser.add_argument("--symbol", default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.symbol)
        return
    if not args.sample.exists():
        sys.exit(f"the IEX sample capture is not at {args.sample}; pass --sample PATH")
    with tempfile.TemporaryDirectory(prefix="bench-iex-") as tmp:
        big, small = Path(tmp) / "big.pcap.gz", Path(tmp) / "small.pcap.gz"
        size = build(args.sample, args.copies, big, args.container)
        small_size = build(args.sample, max(1, args.copies // 4), small, args.container)
        print(
            f"{args.container} capture: {size / 1e6:,.0f} MB uncompressed, {big.stat().st_size / 1e6:,.0f} MB gzipped "
            f"({args.copies} copies of the sample); small: {small_size / 1e6:,.0f} MB"
        )
        run_child(big)  # warm the page cache and imports
        gz, ours, one = [], [], []
        last: dict = {}
        for _ in range(args.repeat):
            gz.append(gunzip_seconds(big))
            last = run_child(big)
            ours.append(last["seconds"])
            one.append(run_child(big, "ZXIET")["seconds"])
        small_run = run_child(small)
        g, o, s = statistics.median(gz), statistics.median(ours), statistics.median(one)
        print(f"gzip -dc > /dev/null        {g:6.2f} s  ({size / g / 1e6:,.0f} MB/s uncompressed)")
        print(
            f"MarketPipe, all symbols     {o:6.2f} s  ratio {o / g:.2f}x  "
            f"({last['messages']:,} messages, {last['trades']:,} trades, {last['bars']:,} bars)"
        )
        print(f"MarketPipe, one symbol      {s:6.2f} s  ratio {s / g:.2f}x")
        print(
            f"peak RSS: {last['peak_rss_mb']:,.0f} MB on {size / 1e6:,.0f} MB, "
            f"{small_run['peak_rss_mb']:,.0f} MB on {small_size / 1e6:,.0f} MB"
        )
        print(
            f"runs: gzip {[round(x, 2) for x in gz]}, all {[round(x, 2) for x in ours]}, one {[round(x, 2) for x in one]}"
        )
        if last["problems"]:
            print("decoder reported:", last["problems"])


if __name__ == "__main__":
    main()
