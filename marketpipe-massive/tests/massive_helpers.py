"""Helpers for the Massive tests: ``mp`` run as a user runs it, against the local server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from marketpipe_massive.testing import MassiveServer

DAYS = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)]


def mp(
    server: MassiveServer, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mp`` run as a user runs it, pointed at ``server`` by environment variables."""
    exe = Path(sys.executable).with_name("mp")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **server.env(), **(env or {})},
    )


def ingest(
    server: MassiveServer, data: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, object]:
    out = mp(
        server, "ingest", "--provider", "massive", "--data-dir", str(data), "--json", *args, env=env
    )
    assert out.stdout, out.stderr
    summary: dict[str, object] = json.loads(out.stdout)
    summary["exit"] = out.returncode
    summary["stderr"] = out.stderr
    return summary
