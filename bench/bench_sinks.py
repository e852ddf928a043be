"""The same Fake job into each sink and each place, in one run: local Parquet (the baseline),
Delta on local disk, Parquet in S3 and Delta in S3 (moto's server on 127.0.0.1).

    python bench/bench_sinks.py [--symbols 100] [--start 2023-01-01] [--end 2023-12-31]

Each job runs in a fresh child process (bench_ingest.py's), so its peak RSS is its own. The S3 jobs go through a
counting relay (:class:`marketpipe.testing.s3.FaultyEndpoint`), which gives the requests per unit
and bytes per request a real bucket would see. Needs ``moto[server]``, ``obstore`` and
``marketpipe-delta``. Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INGEST = Path(__file__).with_name("bench_ingest.py")  # its --child runs one job and reports it


def run_job(args: argparse.Namespace, sink: str, where: str, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(INGEST), "--child", "--symbols", str(args.symbols), "--start",
           args.start, "--end", args.end, "--data-dir", where, "--concurrency",
           str(args.concurrency), "--batch-size", str(args.batch_size), "--sink", sink]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if out.returncode != 0:
        raise SystemExit(f"{sink} at {where} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["state"] == "COMPLETED", result
    result["bars_per_second"] = result["bars"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2023-12-31")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100_000, help="bars per unit of work")
    args = parser.parse_args()

    from marketpipe.testing.s3 import faulty_endpoint, s3_server

    work = Path(tempfile.mkdtemp(prefix="mp-bench-sinks-"))
    quiet = {"MARKETPIPE_FSYNC": "1"}
    results: dict[str, dict] = {}
    try:
        results["parquet, local"] = run_job(args, "parquet", str(work / "parquet"), quiet)
        results["delta, local"] = run_job(args, "delta", str(work / "delta"), quiet)
        with s3_server() as s3, faulty_endpoint(s3) as relay:
            for sink in ("parquet", "delta"):
                bucket = s3.bucket(f"bench-{sink}")
                env = {**relay.env(), **quiet, "MARKETPIPE_STATE_DIR": str(work / f"state-{sink}")}
                before = (dict(relay.methods), relay.bytes_up, relay.bytes_down)
                result = run_job(args, sink, f"s3://{bucket}/bars", env)
                methods = {m: n - before[0].get(m, 0) for m, n in relay.methods.items()}
                requests = sum(methods.values())
                result["requests"] = methods
                result["requests_per_unit"] = requests / max(1, result["units"])
                result["mib_up"] = (relay.bytes_up - before[1]) / 2**20
                result["kib_per_put"] = (
                    (relay.bytes_up - before[1]) / 1024 / max(1, methods.get("PUT", 0))
                )
                result["mib_down"] = (relay.bytes_down - before[2]) / 2**20
                results[f"{sink}, s3 (moto, 127.0.0.1)"] = result
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = results["parquet, local"]
    for result in results.values():
        result["speed_vs_local_parquet"] = result["bars_per_second"] / base["bars_per_second"]
    print(json.dumps(results, indent=2))
    print(f"\n{'job':<28} {'bars/s':>10} {'vs local':>9} {'peak RSS':>9} {'req/unit':>9}")
    for name, r in results.items():
        per_unit = f"{r['requests_per_unit']:.1f}" if "requests_per_unit" in r else "-"
        print(
            f"{name:<28} {r['bars_per_second']:>10,.0f} {r['speed_vs_local_parquet']:>8.2f}x "
            f"{r['peak_rss_mib']:>6.0f} MiB {per_unit:>9}"
        )


if __name__ == "__main__":
    main()
