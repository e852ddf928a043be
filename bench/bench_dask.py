"""Dask scale-out benchmark: IEX decode of capture-days in-process, on 1 and on 2 Dask workers,
and Dask's overhead per unit; all in the same run.

    python bench/bench_dask.py [--days 8] [--copies 50] [--repeat 2] [--workers 1,2]

Needs ``marketpipe-core[dask]`` and ``marketpipe-iex``. Builds ``--days`` capture-days the way
``bench_iex.py`` builds its capture (IEX's real sample day, its packets repeated ``--copies``
times, about 500 MB uncompressed each, gzipped with ``gzip -6`` as IEX ships them); each day's
times are moved to its own trading day, and each copy a few minutes later than the one before,
so a capture stays within its day. Then, alternating, the median of ``--repeat`` runs of
``mp ingest --provider iex --source DIR --all-symbols`` as a subprocess:

- in-process (``--executor local``, the baseline);
- on a cluster of N worker processes of one thread each (``dask scheduler`` and ``dask worker``
  subprocesses on 127.0.0.1, started before the timing), for each N of ``--workers``.

Every run decodes (a fresh decode cache and a fresh dataset). Prints days per minute and the
speed-up over in-process. Then Dask's overhead per unit: a Fake job of many small units
(``--overhead-units`` symbols x 1 day, one unit each, 390 bars) in-process and on 1 worker; the
difference divided by the units (it includes connecting to the scheduler once). And the
pacing of one rate limit by 2 workers with uneven work (3/4 and 1/4 of 120 requests to the
local Alpaca server at 20 requests in 5 s): each pacing half the limit on its own (a static
split), against the shared window on the scheduler (``--pacing-only`` runs just this). Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_iex import DEFAULT_SAMPLE, _fields, _shift

MP = str(Path(sys.executable).with_name("mp"))
DASK = str(Path(sys.executable).with_name("dask"))
SAMPLE_DAY = dt.date(2018, 1, 27)  # the day of IEX's sample capture
DAYS = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 18, 19)]
ENV = {**os.environ, "MARKETPIPE_FSYNC": "0"}


def build_day(raw: bytes, day: dt.date, copies: int, out: Path) -> int:
    """One capture-day of ``copies`` copies of the sample, moved to ``day``."""
    header, body, send_at, seq_at, ts_at, _span, messages = _fields(raw)
    base = (day - SAMPLE_DAY).days * 86_400 * 10**9
    step = 5 * 60 * 10**9  # each copy five minutes after the one before
    plain = out.with_suffix("")
    with open(plain, "wb") as fh:
        fh.write(header)
        for k in range(copies):
            buf = np.frombuffer(body, dtype=np.uint8).copy()
            _shift(buf, send_at, base + k * step)
            _shift(buf, ts_at, base + k * step)
            if k:
                _shift(buf, seq_at, k * messages)
            fh.write(buf.tobytes())
    size = plain.stat().st_size
    subprocess.run(["gzip", "-6", "-f", str(plain)], check=True)
    return size


def sample_symbols(sample: Path) -> list[str]:
    """The symbols that trade in the sample (named on the command line: ``--all-symbols`` would
    list them by decoding every day in the client while planning)."""
    from marketpipe_iex.bars import BarBuilder
    from marketpipe_iex.decode import CaptureDecoder

    builder = BarBuilder()
    for batch in CaptureDecoder(str(sample)).trades():
        builder.add(batch)
    names = builder.finish().to_table().column("symbol").unique().to_pylist()
    return sorted(n for n in names if n.replace(".", "").isalnum())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """``dask scheduler`` and ``dask worker --nworkers N --nthreads T`` on 127.0.0.1, the
    workers in ``env`` (this bench's :data:`ENV` by default)."""

    def __init__(self, workers: int, threads: int = 1, env: dict[str, str] | None = None) -> None:
        self.workers = workers
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [
            subprocess.Popen(
                [DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
                **quiet,
            ),
            subprocess.Popen(
                [DASK, "worker", self.address, "--nworkers", str(workers), "--nthreads",
                 str(threads), "--no-dashboard"],
                env=ENV if env is None else env, **quiet,
            ),
        ]  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
            self.pids = list(client.run(os.getpid).values())

    def cpu_seconds(self) -> float:
        """CPU time the worker processes used so far (user + system, all threads)."""
        import psutil

        return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in self.pids)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(timeout=60)


def paced_requests(url: str, count: int, limit: int, window: float, shared: object | None) -> int:
    """A worker's task: ``count`` requests to the local Alpaca server through a RateLimiter of
    ``limit`` per ``window``, held across the workers when ``shared`` (a ``DaskWindows``)."""
    import contextlib

    import httpx
    from marketpipe.fetch.rate_limiter import RateLimiter, shared_windows

    with contextlib.ExitStack() as stack:
        if shared is not None:
            stack.enter_context(shared_windows(shared))  # type: ignore[arg-type]
        limiter = RateLimiter(limit, window)
    headers = {"APCA-API-KEY-ID": "PKBENCH", "APCA-API-SECRET-KEY": "SKBENCH"}
    query = "symbols=AAPL&timeframe=1Hour&start=2024-01-02T00:00:00Z&end=2024-01-03T00:00:00Z"
    limited = 0
    with httpx.Client(headers=headers, timeout=30) as client:
        for _ in range(count):
            slot = limiter.acquire_slot()
            try:
                limited += client.get(f"{url}/v2/stocks/bars?{query}").status_code == 429
            finally:
                slot.done()
    return limited


def pacing(cluster: Cluster, limit: int, window: float, requests: int) -> None:
    """Two workers with uneven work (3/4 and 1/4 of the requests) under one limit: a static
    split (each worker paces half the limit on its own) against the shared window."""
    from distributed import Client
    from marketpipe.run.dask.coordination import DaskWindows
    from marketpipe_alpaca.testing import FakeAlpacaServer

    print(f"Pacing: {requests} requests, the local Alpaca server at {limit} in {window:g} s")
    print("(pace: the requests after the first window's allowance, over the whole run)")
    print(f"{'limiter':<14} {'seconds':>8} {'req/s':>7} {'of limit':>9} {'429s':>5}")
    with Client(cluster.address, timeout=60) as client:
        workers = sorted(client.scheduler_info()["workers"])[:2]
        shares = [requests * 3 // 4, requests - requests * 3 // 4]
        for name in ("static split", "shared window"):
            with FakeAlpacaServer("PKBENCH", "SKBENCH", rate_limit=limit,
                                  window_seconds=window) as server:  # fmt: skip
                if name == "static split":
                    per, shared = limit // 2, None
                else:
                    per, shared = limit, DaskWindows(f"bench-{time.time_ns()}")
                futures = [
                    client.submit(paced_requests, server.url, n, per, window, shared,
                                  workers=[w], pure=False)
                    for w, n in zip(workers, shares, strict=True)
                ]  # fmt: skip
                limited = sum(client.gather(futures))
                times = server.arrival_times
            took = times[-1] - times[0]
            # The window's first `limit` requests may go at once; the pace is what follows.
            rate = (len(times) - limit) / took
            print(f"{name:<14} {took:8.1f} {rate:7.2f} {rate / (limit / window):8.0%} {limited:5d}")


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def ingest(args: list[str], root: Path, cluster: Cluster | None) -> tuple[float, dict, float]:
    """Seconds, the summary, and the CPU seconds the client and the workers used."""
    if root.exists():
        shutil.rmtree(root)
    where = ["--scheduler", cluster.address] if cluster else ["--executor", "local"]
    cpu = children_cpu() + (cluster.cpu_seconds() if cluster else 0.0)
    started = time.perf_counter()
    done = subprocess.run(
        [MP, *args, "--data-dir", str(root / "data"), *where, "--json"],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"mp failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    summary = json.loads(done.stdout)
    if summary["state"] != "COMPLETED":
        sys.exit(f"the job ended {summary['state']}: {summary.get('error')}")
    cpu = children_cpu() + (cluster.cpu_seconds() if cluster else 0.0) - cpu
    return seconds, summary, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--overhead-units", type=int, default=300)
    parser.add_argument("--pacing-only", action="store_true")
    args = parser.parse_args()
    if not args.sample.exists():
        sys.exit(f"the IEX sample capture is not at {args.sample}; pass --sample PATH")
    counts = [int(n) for n in args.workers.split(",")]
    if args.pacing_only:
        cluster = Cluster(2)
        try:
            pacing(cluster, 20, 5.0, 120)
        finally:
            cluster.close()
        return
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp_name:
        tmp = Path(tmp_name)
        caps = tmp / "caps"
        caps.mkdir()
        raw = gzip.decompress(args.sample.read_bytes())
        built = time.perf_counter()
        sizes = [
            build_day(raw, day, args.copies, caps / f"day{i}.pcap.gz")
            for i, day in enumerate(DAYS[: args.days])
        ]
        gz = sum(p.stat().st_size for p in caps.iterdir())
        print(
            f"{args.days} capture-days of {statistics.mean(sizes) / 1e6:,.0f} MB uncompressed "
            f"({gz / args.days / 1e6:,.0f} MB gzipped) each, built in "
            f"{time.perf_counter() - built:.0f} s"
        )
        symbols = ",".join(sample_symbols(args.sample))
        iex = ["ingest", "--provider", "iex", "--source", str(caps), "--symbols", symbols,
               "-o", f"cache_dir={tmp / 'run' / 'cache'}"]  # fmt: skip
        clusters = {n: Cluster(n) for n in counts}
        try:
            runs: dict[str, list[float]] = {"in-process": []}
            cpus: dict[str, list[float]] = {"in-process": []}
            bars = 0
            for _ in range(args.repeat):
                seconds, summary, cpu = ingest(iex, tmp / "run", None)
                runs["in-process"].append(seconds)
                cpus["in-process"].append(cpu)
                bars = summary["bars"]
                for n, cluster in clusters.items():
                    seconds, summary, cpu = ingest(iex, tmp / "run", cluster)
                    name = f"{n} worker{'s' if n > 1 else ''}"
                    runs.setdefault(name, []).append(seconds)
                    cpus.setdefault(name, []).append(cpu)
                    if summary["bars"] != bars:
                        sys.exit(f"{n} workers stored {summary['bars']} bars, not {bars}")
            base = statistics.median(runs["in-process"])
            print(
                f"IEX decode, {args.days} days, {bars:,} bars each run (medians of {args.repeat})"
            )
            head = f"{'where':<12} {'seconds':>8} {'days/min':>9} {'speed-up':>9} {'CPU s/day':>10}"
            print(f"{head}  runs")
            for name, values in runs.items():
                med = statistics.median(values)
                cpu_day = statistics.median(cpus[name]) / args.days
                print(
                    f"{name:<12} {med:8.1f} {args.days / med * 60:9.1f} {base / med:8.2f}x "
                    f"{cpu_day:10.2f}  {[round(v, 1) for v in values]}"
                )
            print(f"(machine: {os.cpu_count()} cores; CPU s/day counts the client and the workers)")
            if 2 in clusters:
                pacing(clusters[2], 20, 5.0, 120)
            one = clusters[min(counts)]
            names = ",".join(f"S{i:03d}" for i in range(args.overhead_units))
            fake = ["ingest", "--provider", "fake", "--symbols", names, "--start", "2024-01-02",
                    "--end", "2024-01-02", "--batch-size", "390"]  # fmt: skip
            local_runs, dask_runs, units = [], [], 0
            for _ in range(args.repeat):
                seconds, summary, _ = ingest(fake, tmp / "fake", None)
                local_runs.append(seconds)
                units = summary["partitions"]
                seconds, summary, _ = ingest(fake, tmp / "fake", one)
                dask_runs.append(seconds)
            lo, da = statistics.median(local_runs), statistics.median(dask_runs)
            print(
                f"Dask overhead: a Fake job of {units} units of 390 bars took {lo:.2f} s in-process, "
                f"{da:.2f} s on {one.workers} worker: {(da - lo) / units * 1000:.1f} ms a unit"
            )
        finally:
            for cluster in clusters.values():
                cluster.close()


if __name__ == "__main__":
    main()
