"""Soak: many simulated nights of ``mp update`` against the local Alpaca server, with everything
that goes wrong in a year of nights, then the dataset compared with a clean run's.

    python bench/bench_soak.py [--nights 60] [--symbols 10] [--seed 7]

Night 0 ingests the first session of 2024. Each later night moves ``MARKETPIPE_NOW`` to the
evening of the next session and runs ``mp update --quiet`` as cron would, while the server
injects faults into 10 % of the requests (bare 429s, 500, 503, dropped connections, truncated
bodies, slow answers). On top of that:

- one night in five (chosen at random) the update is killed with SIGKILL mid-way;
- three nights in a row the provider is down (every connection dropped);
- one night the disk is full (``RLIMIT_FSIZE``: writes past 32 KiB fail).

At the end the dataset must equal one clean ingest of the same days from a fault-free server
(every column, row for row, read by DuckDB), ``mp verify`` must pass and no job may be left
IN_PROGRESS. Prints nights survived by exit code, requests made, 429s met, wall time, and the
longest night's log (``--quiet`` output: problems only). ``tests/test_soak.py`` runs a short
version. Not a test: figures go into docs/operations.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import TimeRange
from marketpipe_alpaca.testing import FakeAlpacaServer

KEY, SECRET = "PKSOAK000000001", "SKSOAK000000002"
MP = str(Path(sys.executable).with_name("mp"))
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD", "INTC", "IBM")
DISK_LIMIT = 32 * 1024


def sessions(count: int) -> list[dt.date]:
    days = nyse_calendar().sessions(TimeRange(dt.date(2024, 1, 2), dt.date(2024, 12, 31)))
    return list(days)[:count]


def evening(day: dt.date) -> str:
    """After every close of ``day`` and Alpaca's 15 minutes, before the next day in New York."""
    return f"{day.isoformat()}T23:30:00+00:00"


def env_for(server: FakeAlpacaServer, day: dt.date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "MARKETPIPE_"))}
    env.update(
        APCA_API_KEY_ID=KEY,
        APCA_API_SECRET_KEY=SECRET,
        MARKETPIPE_ALPACA_BASE_URL=server.url,
        MARKETPIPE_FSYNC="0",
        MARKETPIPE_NOW=evening(day),
    )
    return env


def _full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_LIMIT, DISK_LIMIT))


def plan_nights(nights: int, rng: random.Random) -> dict[int, str]:
    """Which night has which trouble (besides the 10 % faults every night): an outage of three
    nights, one full disk, a SIGKILL one night in five; the last two nights are plain."""
    trouble: dict[int, str] = {}
    start = rng.randrange(1, max(2, nights - 5))
    for night in range(start, start + 3):
        trouble[night] = "down"
    free = [n for n in range(1, nights - 2) if n not in trouble]
    disk = rng.choice(free)
    trouble[disk] = "disk-full"
    free.remove(disk)
    for night in rng.sample(free, min(len(free), max(1, nights // 5))):
        trouble[night] = "kill"
    return trouble


def rows(root: Path) -> list[tuple[Any, ...]]:
    return duckdb.sql(
        "SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap FROM "
        f"read_parquet('{root}/bars/provider=*/**/*.parquet') ORDER BY ALL"
    ).fetchall()


def run_soak(
    workdir: Path,
    nights: int,
    symbols: int,
    seed: int,
    fault_rate: float = 0.10,
    down_retry_seconds: float | None = None,
) -> dict[str, Any]:
    """Run the soak in ``workdir``; returns its figures and checks (see the module).

    ``down_retry_seconds``: ``MARKETPIPE_HTTP_RETRY_SECONDS`` on the nights the provider is
    down (by default none: the connectors' policy gives up on a server dropping every
    connection within about 20 s, each such night). The short soak's shortcut: the outage
    nights' outcome is the same, three times 17 s sooner."""
    rng = random.Random(seed)
    days = sessions(nights + 1)
    trouble = plan_nights(nights, rng)
    chosen = ",".join(SYMBOLS[:symbols])
    root = workdir / "data"
    logs: dict[int, str] = {}
    codes: dict[int, int | str] = {}
    seconds: dict[int, float] = {}
    started = time.monotonic()
    with FakeAlpacaServer(
        KEY, SECRET, fault_rate=fault_rate, seed=seed, slow_seconds=0.2
    ) as server:
        first = subprocess.run(
            [MP, "ingest", "--provider", "alpaca", "--symbols", chosen, "--start",
             days[0].isoformat(), "--data-dir", str(root), "--json"],
            capture_output=True, text=True, env=env_for(server, days[0]), timeout=600,
        )  # fmt: skip
        if first.returncode != 0:
            raise RuntimeError(f"night 0 failed: {first.stderr}")
        for night in range(1, nights + 1):
            what = trouble.get(night, "")
            server.down = what == "down"
            command = [MP, "update", "--quiet", "--data-dir", str(root), "--deadline", "120s"]
            command += ["--batch-size", "400"]  # a unit a symbol-day: many requests a night
            env = env_for(server, days[night])
            if what == "down" and down_retry_seconds is not None:
                env["MARKETPIPE_HTTP_RETRY_SECONDS"] = str(down_retry_seconds)
            night_started = time.monotonic()
            if what == "kill":
                before = server.stats["requests"]
                proc = subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                # Killed once its first request reached the server, a random moment later:
                # before, during or after the commit of what it fetched.
                limit = time.monotonic() + 60
                while server.stats["requests"] == before and proc.poll() is None:
                    if time.monotonic() > limit:
                        break
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.4))
                proc.kill()
                out, err = proc.communicate(timeout=60)
                codes[night] = "killed" if proc.returncode == -signal.SIGKILL else proc.returncode
            else:
                done = subprocess.run(
                    command,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    preexec_fn=_full_disk if what == "disk-full" else None,
                )
                out, err, codes[night] = done.stdout, done.stderr, done.returncode
            logs[night] = (out + err).strip()
            seconds[night] = round(time.monotonic() - night_started, 2)
        server.down = False
        stats = dict(server.stats)
    soak_seconds = time.monotonic() - started
    last = days[nights]
    verify = subprocess.run(
        [MP, "verify", "--data-dir", str(root), "--json"],
        capture_output=True, text=True, env=env_for(server, last), timeout=600,
    )  # fmt: skip
    jobs = json.loads(
        subprocess.run(
            [MP, "jobs", "list", "--data-dir", str(root), "--json"],
            capture_output=True, text=True, env=env_for(server, last), timeout=600, check=True,
        ).stdout
    )  # fmt: skip
    clean_root = workdir / "clean"
    with FakeAlpacaServer(KEY, SECRET) as clean:
        subprocess.run(
            [MP, "ingest", "--provider", "alpaca", "--symbols", chosen, "--start",
             days[0].isoformat(), "--end", last.isoformat(), "--data-dir", str(clean_root)],
            capture_output=True, text=True, env=env_for(clean, last), timeout=600, check=True,
        )  # fmt: skip
    soaked, expected = rows(root), rows(clean_root)
    longest = max(logs.items(), key=lambda kv: len(kv[1].splitlines()), default=(0, ""))
    return {
        "nights": nights,
        "symbols": symbols,
        "trouble": {str(k): v for k, v in sorted(trouble.items())},
        "exit_codes": {str(k): v for k, v in sorted(codes.items())},
        "by_exit_code": dict(collections.Counter(str(c) for c in codes.values())),
        "requests": stats.get("requests", 0) + stats.get("action_requests", 0),
        "refused_while_down": stats.get("refused_down", 0),
        "answers_429": stats.get("fault_429", 0) + stats.get("429_limit", 0),
        "faults": {k: v for k, v in stats.items() if k.startswith("fault_")},
        "wall_seconds": round(soak_seconds, 1),
        "rows": len(soaked),
        "equal_to_clean_run": soaked == expected,
        "verify_exit": verify.returncode,
        "verify": json.loads(verify.stdout) if verify.stdout.strip().startswith("{") else None,
        "job_states": dict(collections.Counter(j["state"] for j in jobs)),
        "logs": {str(k): v for k, v in sorted(logs.items())},
        "seconds": {str(k): v for k, v in sorted(seconds.items())},
        "longest_log": {"night": longest[0], "text": longest[1]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=60)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_soak(Path(tmp), args.nights, args.symbols, args.seed)
    lines = result["longest_log"]["text"].splitlines()
    print(
        f"nights {result['nights']} x {result['symbols']} symbols: exit codes "
        f"{result['by_exit_code']}; trouble {sorted(set(result['trouble'].values()))}"
    )
    print(
        f"requests {result['requests']:,}, 429s met {result['answers_429']}, refused while "
        f"down {result['refused_while_down']}, wall {result['wall_seconds']} s"
    )
    print(
        f"dataset equal to a clean run: {result['equal_to_clean_run']} ({result['rows']:,} rows); "
        f"verify exit {result['verify_exit']}; jobs {result['job_states']}"
    )
    print(f"longest night's log (night {result['longest_log']['night']}, {len(lines)} lines):")
    for line in lines:
        print(f"  {line}")
    ok = (
        result["equal_to_clean_run"]
        and result["verify_exit"] == 0
        and "IN_PROGRESS" not in result["job_states"]
        and "INTERRUPTED" not in result["job_states"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
