"""Helpers for the cross-package tests: run the installed `mp` as a user runs it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def mp(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = False,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mp`` script (next to this interpreter) like a user would."""
    exe = Path(sys.executable).with_name("mp")
    out = subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"mp {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out


def mp_json(*args: str, **kw: object) -> object:
    return json.loads(mp(*args, "--json", check=True, **kw).stdout)  # type: ignore[arg-type]


def completed(root: Path) -> int:
    """Partitions the job store of the dataset at ``root`` counts complete (0 before it exists)."""
    try:
        db = sqlite3.connect(f"file:{root / '_marketpipe' / 'jobs.sqlite'}?mode=ro", uri=True)
        try:
            query = "SELECT count(*) FROM partitions WHERE state = 'COMPLETED'"
            return int(db.execute(query).fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def wait_for_progress(proc: subprocess.Popen[str], root: Path, partitions: int) -> None:
    """Until the running job has committed ``partitions`` partitions (it must not finish)."""
    deadline = time.monotonic() + 120
    while completed(root) < partitions:
        if proc.poll() is not None:
            raise AssertionError(
                f"the job finished before it could be interrupted: {proc.communicate()}"
            )
        assert time.monotonic() < deadline
        time.sleep(0.005)
