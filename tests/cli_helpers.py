"""Helpers for the cross-package tests: run the installed `mp` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
