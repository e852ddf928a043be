"""What unattended nights found after issue 24: secrets in retry lines, a symbol whose job failed
whole, signals at start-up and after the job, a second overlapping update. The CLI runs as a
user runs it, against the local Alpaca server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from marketpipe_alpaca.testing import FakeAlpacaServer
from test_unattended import KEY, MP, SECRET, alpaca_env, ingest, mp, rows


def down(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a run against a server that is down: each request gives up after 2 s of
    retries rather than about 20."""
    return {**env, "MARKETPIPE_HTTP_RETRY_SECONDS": "2"}


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


def test_a_symbol_whose_whole_job_failed_is_caught_up_by_the_next_update(
    tmp_path: Path,
) -> None:
    """The provider down for the first ingest of MSFT (AAPL stored before): status names what
    was asked and not stored, and the next update fetches it, equal to a clean run."""
    root, clean = tmp_path / "data", tmp_path / "clean"
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server)
        assert mp(*ingest(root, "AAPL", "2024-03-01", "2024-03-15"), env=env).returncode == 0
        server.down = True
        failed = mp(*ingest(root, "MSFT", "2024-03-04", "2024-03-15"), env=down(env))
        assert failed.returncode == 75, failed.stderr
        status = mp("status", "--data-dir", str(root), "--json", env=env)
        [series] = json.loads(status.stdout)["series"]
        [unstored] = series["unstored"]
        assert unstored["symbol"] == "MSFT" and unstored["days"] == 10
        assert (unstored["first_day"], unstored["last_day"]) == ("2024-03-04", "2024-03-15")
        shown = mp("status", "--data-dir", str(root), env=env)
        assert "MSFT" in shown.stdout and "not stored" in shown.stdout
        server.down = False
        night = mp("update", "--data-dir", str(root), "--quiet", env=env)
        assert night.returncode == 0, night.stderr
        assert mp(*ingest(clean, "AAPL", "2024-03-01", "2024-03-28"), env=env).returncode == 0
        assert mp(*ingest(clean, "MSFT", "2024-03-04", "2024-03-28"), env=env).returncode == 0
        status = mp("status", "--data-dir", str(root), "--json", env=env)
        assert json.loads(status.stdout)["series"][0]["unstored"] == []
    assert rows(root) == rows(clean)


def test_a_first_ingest_that_failed_whole_is_caught_up_too(tmp_path: Path) -> None:
    """No bar stored at all: the series exists only in the job store, and update finds it."""
    root, clean = tmp_path / "data", tmp_path / "clean"
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server)
        server.down = True
        assert mp(*ingest(root, "MSFT", "2024-03-25", "2024-03-28"), env=down(env)).returncode == 75
        server.down = False
        night = mp("update", "--data-dir", str(root), "--json", env=env)
        assert night.returncode == 0, night.stderr
        assert mp(*ingest(clean, "MSFT", "2024-03-25", "2024-03-28"), env=env).returncode == 0
        bars = sum(s["job"]["bars"] for s in json.loads(night.stdout)["series"])
    assert bars == len(rows(clean)) > 1000
    assert rows(root) == rows(clean)


def test_an_identical_rerun_costs_the_provider_nothing(tmp_path: Path) -> None:
    """A re-run of done work asks for no bars and no corporate actions; a run that fetched new
    bars asks for the actions once a session; mp update always asks."""
    root = tmp_path / "data"
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server)
        job = ingest(root, "AAPL,MSFT", "2024-03-04", "2024-03-08")
        assert mp(*job, env=env).returncode == 0
        assert server.stats["action_requests"] == 1
        bars = server.stats["requests"]
        assert mp(*job, env=env).returncode == 0
        assert (server.stats["requests"], server.stats["action_requests"]) == (bars, 1)
        more = ingest(root, "AAPL,MSFT", "2024-03-11", "2024-03-12")
        assert mp(*more, env=env).returncode == 0  # new bars, the same session: asked already
        assert server.stats["requests"] > bars and server.stats["action_requests"] == 1
        earlier = ingest(root, "AAPL", "2024-02-26", "2024-02-27")
        assert mp(*earlier, env=env).returncode == 0  # earlier days: their actions are asked
        assert server.stats["action_requests"] == 2
        assert mp("update", "--data-dir", str(root), env=env).returncode == 0
        assert server.stats["action_requests"] == 3


def test_a_second_overlapping_update_is_try_again_later(tmp_path: Path) -> None:
    """Cron starts tonight's update while last night's still runs: exit 75 (EX_TEMPFAIL), one
    line naming the running job, nothing for a person to fix."""
    root = tmp_path / "data"
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server)
        symbols = "AAPL,MSFT,NVDA,AMZN"
        assert mp(*ingest(root, symbols, "2024-03-01", "2024-03-08"), env=env).returncode == 0
        server.fault_rate, server.faults, server.slow_seconds = 1.0, ("slow",), 4.0
        before = server.stats["requests"]
        first = subprocess.Popen(
            [MP, "update", "--data-dir", str(root), "--quiet"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while server.stats["requests"] == before:  # the first night's job is fetching bars
                assert time.monotonic() < deadline and first.poll() is None
                time.sleep(0.02)
            second = mp("update", "--data-dir", str(root), "--quiet", env=env)
            assert second.returncode == 75, second.stderr
            [line] = second.stderr.strip().splitlines()
            assert "is running in process" in line
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=60)


def test_a_base_url_with_an_impossible_port_is_one_configuration_error(tmp_path: Path) -> None:
    with FakeAlpacaServer(KEY, SECRET) as server:
        env = alpaca_env(server, MARKETPIPE_ALPACA_BASE_URL="http://127.0.0.1:99422")
        out = mp(*ingest(tmp_path / "data", "AAPL", "2024-03-01", "2024-03-08"), env=env)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().splitlines() == [
            "Error: base_url 'http://127.0.0.1:99422' is not a usable URL: "
            "Port out of range 0-65535"
        ]
        assert server.stats["requests"] == 0


def test_an_unknown_key_in_the_config_file_is_named_with_the_close_match(tmp_path: Path) -> None:
    config = tmp_path / "marketpipe.toml"
    config.write_text('deadlne = "6h"\n')
    env = {**os.environ, "MARKETPIPE_CONFIG": str(config), "MARKETPIPE_FSYNC": "0"}
    job = ["ingest", "--provider", "fake", "--symbols", "AAPL", "--start", "2024-03-01",
           "--end", "2024-03-01", "--data-dir", str(tmp_path / "data")]  # fmt: skip
    out = mp(*job, env=env)
    assert out.returncode == 2, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "unknown key 'deadlne'; did you mean 'deadline'?" in line
