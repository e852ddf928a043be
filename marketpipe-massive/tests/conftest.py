from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from marketpipe_massive.testing import MassiveServer, publish_market, publish_reference

DAYS = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)]


@pytest.fixture
def server() -> Iterator[MassiveServer]:
    with MassiveServer() as running:
        yield running


@pytest.fixture
def market(server: MassiveServer) -> dict[dt.date, pa.Table]:
    """The week's files and reference data published; each day's minute table as written."""
    publish_reference(server)
    return publish_market(server, DAYS)


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
