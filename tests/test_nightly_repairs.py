"""What unattended nights found after issue 24: secrets in retry lines, a symbol whose job failed
whole, signals at start-up and after the job, a second overlapping update. The CLI runs as a
user runs it, against the local Alpaca server."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from marketpipe_alpaca.testing import FakeAlpacaServer
from test_unattended import KEY, MP, SECRET, alpaca_env, ingest, mp


def test_retry_lines_never_show_the_secrets_a_server_echoes(tmp_path: Path) -> None:
    """An upstream whose 500 bodies echo the request's headers: every line on stderr and stdout
    is scrubbed, the retry warnings included."""
    with FakeAlpacaServer(
        KEY, SECRET, fault_rate=0.5, faults=("500",), echo_headers=True, seed=3
    ) as server:
        root = tmp_path / "data"
        out = mp(*ingest(root, "AAPL,MSFT", "2024-03-01", "2024-03-08"), env=alpaca_env(server))
        assert server.stats["fault_500"] > 0
        assert "retry" in out.stderr, out.stderr  # the retry lines were printed...
        assert "APCA-API-KEY-ID" in out.stderr or "Apca-Api-Key-Id" in out.stderr
        for text in (out.stdout, out.stderr):
            assert KEY not in text and SECRET not in text  # ...with the key and secret redacted
        jobs = mp("jobs", "list", "--data-dir", str(root), "--json", env=alpaca_env(server))
        assert SECRET not in jobs.stdout and json.loads(jobs.stdout)


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (Linux: SigCgt in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signum - 1)))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_command_loads_is_exit_130_in_one_line(
    tmp_path: Path, signum: int
) -> None:
    command = [MP, "update", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
