"""Units on a real Dask cluster: a scheduler and worker processes on 127.0.0.1
(``distributed.LocalCluster(processes=True)``), the CLI run as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import duckdb
import httpx
import pytest
from cli_helpers import mp, mp_json, wait_for_progress
from distributed import Client, LocalCluster
from marketpipe.model.errors import InvalidInputError
from marketpipe.run.dask.client import DaskUnits
from marketpipe.run.dask.tasks import days_listed, units_run
from marketpipe.run.executors import ExecutorChoice
from marketpipe_alpaca.testing import FakeAlpacaServer

JOB = ("ingest", "--provider", "fake", "--symbols", "AAPL,MSFT,SPY,QQQ", "--start",
       "2024-01-02", "--end", "2024-02-29", "--batch-size", "4000")  # fmt: skip
QUIET = {"MARKETPIPE_FSYNC": "0"}
MP = str(Path(sys.executable).with_name("mp"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as local,
        Client(local) as client,
    ):
        yield client


@contextlib.contextmanager
def _by_value() -> Iterator[None]:
    """Functions of this module travel to the workers by value (the workers cannot import it)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _arrow_pool() -> str:
    import pyarrow

    return str(pyarrow.default_memory_pool().backend_name)


def rows(root: Path) -> list[tuple]:
    return duckdb.sql(
        f"SELECT symbol, timestamp, open, high, low, close, volume, trade_count, vwap FROM "
        f"read_parquet('{root}/**/*.parquet') ORDER BY symbol, timestamp"
    ).fetchall()


def planned_units(root: Path) -> int:
    for log in (root / "_marketpipe" / "events").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "IngestionJobPlanned":
                return int(event["units"])
    raise AssertionError("no job was planned")


def test_a_job_on_the_cluster_equals_the_local_run_and_its_units_ran_on_workers(
    cluster: Client, tmp_path: Path
) -> None:
    before = sum(cluster.run(units_run).values())
    remote = tmp_path / "remote"
    address = cluster.scheduler.address
    out = mp_json(*JOB, "--data-dir", str(remote), "--scheduler", address, env=QUIET)
    assert out["state"] == "COMPLETED"  # type: ignore[index]
    ran = cluster.run(units_run)
    assert sum(ran.values()) - before == planned_units(remote) > 1
    assert len([n for n in ran.values() if n]) == 2  # both workers took units
    with _by_value():  # the job's plugin: Arrow's buffers from each worker's heap, as in mp
        assert set(cluster.run(_arrow_pool).values()) == {"system"}
    local = tmp_path / "local"
    mp(*JOB, "--data-dir", str(local), env=QUIET, check=True)
    assert rows(remote) == rows(local)
    assert len(rows(local)) == 4 * 41 * 390
    # The job store (the client's) agrees with the files the workers wrote.
    status = mp_json("status", "--data-dir", str(remote), env=QUIET)
    assert sum(s["bars"] for s in status["series"][0]["symbols"]) == 4 * 41 * 390  # type: ignore[index]
    assert mp_json("verify", "--data-dir", str(remote), env=QUIET)["ok"] is True  # type: ignore[index]


def test_trades_on_the_cluster_equal_the_local_run(cluster: Client, tmp_path: Path) -> None:
    job = (*JOB[:7], "--end", "2024-01-05", "--kind", "trades")
    remote, local = tmp_path / "remote", tmp_path / "local"
    address = cluster.scheduler.address
    out = mp_json(*job, "--data-dir", str(remote), "--scheduler", address, env=QUIET)
    assert out["state"] == "COMPLETED" and out["kind"] == "trades"  # type: ignore[index]
    mp(*job, "--data-dir", str(local), env=QUIET, check=True)

    def trades(root: Path) -> list[tuple]:
        return duckdb.sql(
            "SELECT symbol, timestamp, price, size, id, sequence FROM "
            f"read_parquet('{root}/trades/**/*.parquet') ORDER BY symbol, timestamp, sequence"
        ).fetchall()

    assert trades(remote) == trades(local) and len(trades(local)) == out["bars"]  # type: ignore[index]
    assert mp_json("verify", "--data-dir", str(remote), env=QUIET)["ok"] is True  # type: ignore[index]


def test_update_takes_the_scheduler_from_the_environment(cluster: Client, tmp_path: Path) -> None:
    root = tmp_path / "data"
    first = (*JOB[:5], "--start", "2024-01-29", "--end", "2024-02-02")
    mp(*first, "--data-dir", str(root), env=QUIET, check=True)
    before = sum(cluster.run(units_run).values())
    env = {**QUIET, "MARKETPIPE_NOW": "2024-02-07T12:00:00Z",
           "MARKETPIPE_DASK_SCHEDULER": cluster.scheduler.address}  # fmt: skip
    update = mp_json("update", "--data-dir", str(root), env=env)
    job = update["series"][0]["job"]  # type: ignore[index]
    assert (job["partitions_stored"], job["partitions_completed"]) == (20, 8)
    assert sum(cluster.run(units_run).values()) > before


def test_dask_without_a_scheduler_starts_a_local_cluster(tmp_path: Path) -> None:
    """Quietly, even when Dask's usual port (8787) is taken: another job's cluster, a notebook's
    dashboard. Distributed then printed a UserWarning of three lines on the job's stderr."""
    job = (*JOB[:5], "--start", "2024-01-02", "--end", "2024-01-05")
    with contextlib.ExitStack() as held:
        taken = held.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # taken already: the case this test is about
            taken.bind(("", 8787))
            taken.listen()
        out = mp(*job, "--data-dir", str(tmp_path / "d"), "--executor", "dask", "--json",
                 env=QUIET)  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["state"], summary["bars"]) == ("COMPLETED", 4 * 4 * 390)
    assert "Warning" not in out.stderr and "8787" not in out.stderr, out.stderr


#: The time to reach a scheduler (10 s by default), for tests that wait it out.
QUICK = {**QUIET, "MARKETPIPE_DASK_CONNECT_SECONDS": "2"}


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens once closed
    out = mp(*JOB, "--data-dir", str(tmp_path / "d"), "--scheduler", f"tcp://127.0.0.1:{port}",
             env=QUICK, timeout=120)  # fmt: skip
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: "
        + out.stderr.split(f"{port}: ", 1)[1].strip()
    ]
    assert "Timed out" in out.stderr or "refused" in out.stderr


def test_a_port_that_speaks_http_instead_of_dask_is_one_line_not_a_hang(tmp_path: Path) -> None:
    """It accepts the connection and never completes Dask's handshake: bounded all the same."""
    with FakeAlpacaServer(PACED_KEY, PACED_SECRET) as http:
        port = http.url.rsplit(":", 1)[1]
        started = time.monotonic()
        out = mp(*JOB, "--data-dir", str(tmp_path / "d"), "--scheduler",
                 f"tcp://127.0.0.1:{port}", env=QUICK, timeout=120)  # fmt: skip
        took = time.monotonic() - started
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: nothing there "
        "answered as a Dask scheduler within 2 s (is it the scheduler's port?)"
    ]
    assert took < 30  # it used to wait forever


def test_a_connect_time_that_is_no_number_of_seconds_is_one_line(tmp_path: Path) -> None:
    out = mp(*JOB, "--data-dir", str(tmp_path / "d"), "--scheduler", "tcp://127.0.0.1:9",
             env={**QUIET, "MARKETPIPE_DASK_CONNECT_SECONDS": "ten"})  # fmt: skip
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        "Error: MARKETPIPE_DASK_CONNECT_SECONDS must be a positive number of seconds, got 'ten'"
    ]
    assert not (tmp_path / "d" / "bars").exists()


def test_sigterm_while_waiting_for_a_scheduler_stops_at_once(tmp_path: Path) -> None:
    """What cron's timeout and systemd send: the wait for a scheduler that never answers
    ends within 2 seconds, with nothing written."""
    connected = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        held: list[socket.socket] = []

        def accept() -> None:
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                held.append(conn)  # accepted, never answered
                connected.set()

        threading.Thread(target=accept, daemon=True).start()
        proc = subprocess.Popen(
            [MP, *JOB, "--data-dir", str(tmp_path / "d"), "--scheduler", f"tcp://127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **QUIET},
        )  # fmt: skip
        assert connected.wait(60), "mp never tried the scheduler"
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - stopped
        for conn in held:
            conn.close()
    assert proc.returncode == 130, err
    assert took < 2.0, took
    assert "Interrupted before the job started; nothing was written." in err
    assert "Traceback" not in err and "Warning" not in err
    assert not (tmp_path / "d" / "bars/provider=fake").exists()


def test_without_dask_installed_dask_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    units = DaskUnits(ExecutorChoice("dask", "tcp://127.0.0.1:8786"))
    with pytest.raises(InvalidInputError, match=r'pip install "marketpipe-core\[dask\]"'):
        asyncio.run(units.__aenter__())


def test_a_lanes_worker_stays_known_after_the_clients_cache_of_the_cluster_refreshes(
    cluster: Client,
) -> None:
    """An asynchronous client's ``scheduler_info()`` is a cache whose first refresh drops
    the workers: the day-file units read it to pick their day's worker and, from then on, went
    anywhere (and each day's file was read again there)."""
    import dask

    addresses = sorted(cluster.scheduler_info()["workers"])
    assert len(addresses) == 2

    async def lanes_after_a_refresh() -> tuple[list, list]:
        with dask.config.set({"distributed.client.scheduler-info-interval": "20ms"}):
            async with DaskUnits(ExecutorChoice("dask", cluster.scheduler.address)) as units:
                client = units._client
                for _ in range(500):  # the refresh, waited for: the cache without workers
                    if not client.scheduler_info().get("workers"):
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("the client's cache kept its workers")
                sizes = [units.workers, sum(units.threads), units.threads]
                return [units._worker_at(n) for n in range(3)], sizes

    lanes, sizes = asyncio.run(lanes_after_a_refresh())
    assert lanes == [[addresses[0]], [addresses[1]], [addresses[0]]]
    assert sizes == [2, 2, [1, 1]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def dask_processes(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``dask scheduler`` and ``dask worker`` processes, as a user runs them; yields the
    scheduler's process (to kill) and stops both on exit."""
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers = subprocess.Popen(
        [dask, "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "2", "--nthreads", "1",
         "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield scheduler
    finally:
        scheduler.kill()
        workers.kill()
        workers.wait()


#: 16 symbols over two months: long enough to be interrupted well into it.
LONG_JOB = (*JOB[:4], ",".join(f"K{i:02d}" for i in range(16)), *JOB[5:])


def start_job(root: Path, *args: str, job: tuple[str, ...] = LONG_JOB,
              env: dict[str, str] = QUIET) -> subprocess.Popen[str]:  # fmt: skip
    """``mp`` running ``job`` into ``root`` with ``--json``, as a user starts it."""
    return subprocess.Popen(
        [MP, *job, "--data-dir", str(root), *args, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip


def test_the_scheduler_lost_mid_job_fails_it_in_one_line_and_resume_finishes(
    tmp_path: Path,
) -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    root = tmp_path / "data"
    with dask_processes(port) as scheduler:
        # Lost once it has not been reached again for the connect time (2 s here).
        proc = start_job(root, "--scheduler", address, env=QUICK)
        wait_for_progress(proc, root, 40)  # well into the job
        scheduler.kill()
        scheduler.wait()
        out, err = proc.communicate(timeout=120)
        summary = json.loads(out)
        assert summary["state"] == "FAILED", summary
        assert proc.returncode == 75  # the cluster out of reach: try again later (EX_TEMPFAIL)
        assert len(err.strip().splitlines()) == 1, err
        line = err.strip()
        assert f"lost the Dask scheduler at {address}" in line, err
    with dask_processes(port):
        resumed = mp_json("jobs", "resume", summary["job_id"], "--data-dir", str(root),
                          "--scheduler", address, env=QUIET)  # fmt: skip
        assert resumed["state"] == "COMPLETED"  # type: ignore[index]
    local = tmp_path / "local"
    mp(*LONG_JOB, "--data-dir", str(local), env=QUIET, check=True)
    assert rows(root) == rows(local)


def test_a_worker_killed_mid_job_has_its_unit_run_elsewhere_and_nothing_doubles(
    tmp_path: Path,
) -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    root = tmp_path / "data"
    with dask_processes(port), Client(address, timeout=60) as client:
        pids = client.run(os.getpid)
        proc = start_job(root, "--scheduler", address)
        wait_for_progress(proc, root, 40)  # well into the job: both workers busy with units
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out)["state"] == "COMPLETED"
    local = tmp_path / "local"
    mp(*LONG_JOB, "--data-dir", str(local), env=QUIET, check=True)
    assert rows(root) == rows(local)  # the killed worker's unit ran again; no row twice
    assert mp_json("verify", "--data-dir", str(root), env=QUIET)["ok"] is True  # type: ignore[index]


PACED_KEY, PACED_SECRET = "PKDASKPACING0001", "SKDASKPACING0002"
#: The local Alpaca server's rate window: 8 requests in it.
WINDOW = 2.0
PACED_JOB = ("ingest", "--provider", "alpaca", "--symbols", "AAPL,MSFT,SPY,QQQ", "--start",
             "2023-07-03", "--end", "2024-06-28", "--timeframe", "1h", "--batch-size", "100")  # fmt: skip


def paced_env(server: FakeAlpacaServer) -> dict[str, str]:
    """The local Alpaca server's address and its limit, 8 requests a WINDOW."""
    return {**QUIET, "APCA_API_KEY_ID": PACED_KEY, "APCA_API_SECRET_KEY": PACED_SECRET,
            "MARKETPIPE_ALPACA_BASE_URL": server.url, "MARKETPIPE_ALPACA_RATE_LIMIT": "8",
            "MARKETPIPE_ALPACA_RATE_LIMIT_WINDOW": str(WINDOW)}  # fmt: skip


def paced_cluster() -> LocalCluster:
    return LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0",
                        env={"APCA_API_KEY_ID": PACED_KEY, "APCA_API_SECRET_KEY": PACED_SECRET})  # fmt: skip


def scrape(port: int, name: str) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def test_workers_hold_one_rate_limit_together_at_its_pace_with_no_429(tmp_path: Path) -> None:
    """The local Alpaca server allows 8 requests a WINDOW. Both workers take a lease on the
    scheduler for each request: together they never go over (how close to the limit they keep
    is bench_dask.py's figure). The requests the workers made, and their waits for the shared
    window, show in the client's metrics."""
    port = free_port()
    requests = 'marketpipe_requests_total{provider="alpaca",status="200"}'
    waits = "marketpipe_rate_limiter_wait_seconds_count"
    with (
        FakeAlpacaServer(PACED_KEY, PACED_SECRET, rate_limit=8, window_seconds=WINDOW) as server,
        paced_cluster() as cluster,
    ):
        proc = start_job(tmp_path, "--scheduler", cluster.scheduler_address, "--metrics-port",
                         str(port), job=PACED_JOB, env=paced_env(server))  # fmt: skip
        seen: list[tuple[float, float, float]] = []
        while proc.poll() is None:
            scraped = (scrape(port, requests), scrape(port, waits))
            if scraped[0] is not None and scraped[1] is not None:
                seen.append((scraped[0], server.stats["requests"], scraped[1]))
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)  # the next scrape, or the job's end
        out, err = proc.communicate()
        assert json.loads(out)["state"] == "COMPLETED", err
        with Client(cluster) as client:
            per_worker = client.run(units_run)
    assert len(per_worker) == 2 and min(per_worker.values()) > 0, per_worker  # both sent
    assert server.stats["429_limit"] == 0
    times = server.arrival_times
    eighth_before = [later - earlier for earlier, later in zip(times, times[8:], strict=False)]
    assert len(eighth_before) >= 25, len(times)
    assert min(eighth_before) > WINDOW  # never 9 requests in one window (bench_dask.py measures
    # how close to the limit the workers keep: a speed figure, not a test's)
    # The client's /metrics counted the workers' requests while the job ran: never more than
    # the server had seen, and all but the last units' by the end; and the workers' waits for
    # the shared window (requests queued behind 8 a window must wait) reached it too.
    assert len(seen) >= 10 and seen[-1][0] > seen[0][0]
    assert all(counted <= answered for counted, answered, _ in seen)
    assert seen[-1][0] >= 0.7 * server.stats["requests"], seen[-3:]
    assert [w for _, _, w in seen] == sorted(w for _, _, w in seen) and seen[-1][2] > 0


def _penalize(name: str, seconds: float) -> None:
    from marketpipe.fetch.rate_limiter import RateLimiter, shared_windows
    from marketpipe.run.dask.coordination import DaskWindows

    with shared_windows(DaskWindows(name)):
        limiter = RateLimiter(5, 1.0)
    limiter.penalize(seconds)  # a 429 with Retry-After on this worker


def _one_request_wait(name: str) -> float:
    from marketpipe.fetch.rate_limiter import RateLimiter, shared_windows
    from marketpipe.run.dask.coordination import DaskWindows

    with shared_windows(DaskWindows(name)):
        limiter = RateLimiter(5, 1.0)
    started = time.monotonic()
    limiter.acquire_slot().done()
    return time.monotonic() - started


def test_a_retry_after_on_one_worker_holds_back_the_others(cluster: Client) -> None:
    with _by_value():
        first, second = sorted(cluster.scheduler_info()["workers"])[:2]
        name = f"test-{time.time_ns()}"
        calm = cluster.submit(_one_request_wait, f"{name}-calm", workers=[second], pure=False)
        assert calm.result() < 0.5  # a request waits for nothing by itself
        cluster.submit(_penalize, name, 3.0, workers=[first], pure=False).result()
        # The pause reaches the scheduler (waited for, not slept on) ...
        key = ["marketpipe", f"marketpipe-rate-{name}-5-per-1s", "pause"]
        deadline = time.monotonic() + 10
        while cluster.get_metadata(key, default=None) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # ... and the other worker's next request waits for its end.
        waited = cluster.submit(_one_request_wait, name, workers=[second], pure=False).result()
        assert waited >= 2.0, waited  # alone it waits for nothing (above)
    # Workers that looked for a pause nobody had set left nothing in the scheduler's log.
    logged = [message for _, message in cluster.get_scheduler_logs(n=10_000)]
    assert not [m for m in logged if "TimeoutError" in m or "variable_get" in m]


def _tasks_executing(dask_worker: Any) -> int:
    return int(dask_worker.state.executing_count)


def test_ctrl_c_stops_the_workers_fetches_and_resume_finishes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with (
        FakeAlpacaServer(PACED_KEY, PACED_SECRET, rate_limit=8, window_seconds=WINDOW) as server,
        paced_cluster() as cluster,
    ):
        proc = start_job(root, "--scheduler", cluster.scheduler_address, job=PACED_JOB,
                         env=paced_env(server))  # fmt: skip
        wait_for_progress(proc, root, 8)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        ended = time.monotonic()
        assert proc.returncode == 130, err
        assert "Resume with: mp jobs resume" in err
        job_id = json.loads(out)["job_id"]
        assert mp_json("jobs", "list", "--data-dir", str(root))[0]["state"] == "CANCELLED"  # type: ignore[index]
        # The workers dropped the job's fetches: once no task runs on any worker (waited for),
        # no request of the job reached the server after the client had gone.
        with Client(cluster) as client, _by_value():
            deadline = time.monotonic() + 60
            while sum(client.run(_tasks_executing).values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sum(client.run(_tasks_executing).values()) == 0
        assert [t for t in server.arrival_times if t > ended] == []
        resumed = mp("jobs", "resume", job_id, "--data-dir", str(root), "--scheduler",
                     cluster.scheduler_address, "--json", env=paced_env(server))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["state"] == "COMPLETED" and summary["partitions_skipped"] > 0
    with FakeAlpacaServer(PACED_KEY, PACED_SECRET) as reference:
        local = tmp_path / "local"
        env = {**paced_env(reference), "MARKETPIPE_ALPACA_RATE_LIMIT": "10000"}
        mp(*PACED_JOB, "--data-dir", str(local), env=env, check=True)
    assert rows(root) == rows(local)
    assert mp_json("verify", "--data-dir", str(root), env=QUIET)["ok"] is True  # type: ignore[index]


def test_a_worker_without_the_provider_fails_the_units_with_that_message(tmp_path: Path) -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"MARKETPIPE_DISABLE_PLUGINS": "fake"}) as cluster:  # fmt: skip
        out = mp(*JOB, "--data-dir", str(tmp_path), "--scheduler", cluster.scheduler_address,
                 "--json", env=QUIET)  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["state"] == "FAILED"
    assert summary["partitions_completed"] == 0
    assert out.returncode == 1, out.stderr
    error = summary["failures"][0]["error"]
    assert error.startswith(f"the worker on {socket.gethostname()} cannot run this job: "
                            "unknown provider 'fake'; installed providers: "), error  # fmt: skip
    assert error.endswith(
        "every worker needs the client's plugins installed and their secret settings in its "
        "own environment"
    ), error
    assert list(tmp_path.rglob("*.parquet")) == []


def test_the_client_killed_mid_job_then_the_same_command_resumes_it(
    cluster: Client, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    where = ("--scheduler", cluster.scheduler.address)
    proc = start_job(root, *where)
    wait_for_progress(proc, root, 40)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    again = mp(*LONG_JOB, "--data-dir", str(root), *where, "--json", env=QUIET)  # the same command
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["state"] == "COMPLETED" and summary["partitions_skipped"] >= 40
    assert [j["state"] for j in mp_json("jobs", "list", "--data-dir", str(root))] == ["COMPLETED"]  # type: ignore[union-attr]
    local = tmp_path / "local"
    mp(*LONG_JOB, "--data-dir", str(local), env=QUIET, check=True)
    assert rows(root) == rows(local)


def test_an_iex_multi_day_job_on_the_cluster_equals_the_local_run(
    cluster: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IEX captures decoded on the workers (the capture folder is shared, as a cluster's
    storage would be) give the rows a local run gives. ``--all-symbols`` is listed by the
    workers too: for IEX, listing a day is decoding it."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "marketpipe-iex" / "tests"))
    from iex_days import write_days

    days = [dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6), dt.date(2024, 3, 7)]
    write_days(tmp_path / "caps", days)

    def job(cache: str) -> tuple[str, ...]:
        return ("ingest", "--provider", "iex", "--source", str(tmp_path / "caps"),
                "--all-symbols", "-o", f"cache_dir={tmp_path / cache}", "--batch-size", "1000")  # fmt: skip

    before = sum(cluster.run(units_run).values()), sum(cluster.run(days_listed).values())
    remote = tmp_path / "remote"
    out = mp_json(*job("remote-cache"), "--data-dir", str(remote), "--scheduler",
                  cluster.scheduler.address, env=QUIET)  # fmt: skip
    assert out["state"] == "COMPLETED"  # type: ignore[index]
    assert sum(cluster.run(units_run).values()) - before[0] == planned_units(remote) > 1
    assert sum(cluster.run(days_listed).values()) - before[1] == len(days)
    local = tmp_path / "local"
    mp(*job("local-cache"), "--data-dir", str(local), env=QUIET, check=True)
    assert rows(remote) == rows(local)
    assert {r[0] for r in rows(local)} == {"AAPL", "MSFT", "ZVZZT"}


@pytest.mark.parametrize("kind", ["trades", "1m"])
def test_a_workers_listing_task_decodes_for_the_kind_the_job_fetches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A cluster's --all-symbols listing of a tick job keeps the day's ticks from the decode
    that lists it, as the local run does: the units then read them from the cache instead of
    decoding the day again (the task carries the job's kind to the provider's ``expect``)."""
    from marketpipe.model.calendar import nyse_calendar
    from marketpipe.model.values import Session, Timeframe, TimeRange
    from marketpipe.run.dask.tasks import ListTask, list_symbols

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "marketpipe-iex" / "tests"))
    from iex_days import write_days

    day = dt.date(2024, 3, 4)
    write_days(tmp_path / "caps", [day])
    settings = {"source": str(tmp_path / "caps"), "cache_dir": str(tmp_path / "cache")}
    windows = tuple(nyse_calendar().windows(TimeRange(day, day), Session.REGULAR))
    listed = list_symbols(ListTask("iex", settings, windows, timeframe=Timeframe.parse(kind)))
    assert listed.symbols == ["AAPL", "MSFT", "ZVZZT"]
    ticks = sorted(p.name for p in (tmp_path / "cache").rglob("*.parquet") if "bars" not in p.name)
    assert len(ticks) == (2 if kind == "trades" else 0), ticks


def _set_env(values: dict[str, str | None]) -> None:
    """In a worker: set (or, for ``None``, remove) environment variables."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_a_whole_market_job_on_the_cluster_reads_each_day_file_once(
    cluster: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flat-file provider's units of one day go to one worker (the next day's to the other),
    which reads the day's file once for all of them: each minute file is fetched once, however
    many units the day has, and the rows equal a local run's."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "marketpipe-massive" / "tests"))
    from marketpipe_massive.testing import MassiveServer, publish_market, publish_reference
    from massive_helpers import DAYS, ingest
    from massive_helpers import mp as massive_mp

    job = ("--all-symbols", "--start", str(DAYS[0]), "--end", str(DAYS[-1]),
           "--session", "extended", "--batch-size", "600")  # fmt: skip
    with MassiveServer() as server:
        publish_reference(server)
        publish_market(server, DAYS)
        # Workers resolve secret settings from their own environment, never from the client.
        refused = massive_mp(server, "ingest", "--provider", "massive", "--data-dir",
                             str(tmp_path / "refused"), *job, "--scheduler",
                             cluster.scheduler.address)  # fmt: skip
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "cannot list symbols" in refused.stderr and "S3_ACCESS_KEY_ID" in refused.stderr
        cluster.run(_set_env, server.env())
        try:
            before = cluster.run(units_run)
            remote = tmp_path / "remote"
            out = ingest(server, remote, *job, "--scheduler", cluster.scheduler.address, env=QUIET)
            assert out["state"] == "COMPLETED", out["stderr"]
            ran = {w: n - before[w] for w, n in cluster.run(units_run).items()}
            assert sum(ran.values()) == planned_units(remote) >= 3 * len(DAYS)
            assert all(ran.values())  # both workers took days
            minute_files = [k for k in server.gets() if "/minute_aggs_v1/" in k]
            assert sorted(minute_files) == sorted(set(minute_files)) and len(minute_files) == len(
                DAYS
            )
            local = tmp_path / "local"
            assert ingest(server, local, *job, env=QUIET)["state"] == "COMPLETED"
        finally:
            cluster.run(_set_env, dict.fromkeys(server.env()))
    assert rows(remote) == rows(local) and rows(local)


def _watch_sqlite_opens() -> None:
    """In a worker: record every SQLite database and every file under a ``_marketpipe``
    folder this process opens from now on (a Python audit hook: it sees every ``open`` and
    ``sqlite3.connect``, whoever makes it)."""
    import sys as worker_sys

    if getattr(worker_sys, "_marketpipe_opened", None) is not None:
        return
    opened: list[str] = []
    worker_sys._marketpipe_opened = opened  # type: ignore[attr-defined]

    def hook(event: str, args: tuple) -> None:
        if event == "sqlite3.connect" or (
            event == "open" and isinstance(args[0], str | bytes | os.PathLike)
        ):
            name = os.fsdecode(args[0]) if event == "open" else str(args[0])
            if event == "sqlite3.connect" or ".sqlite" in name:
                opened.append(f"{event} {name}")

    worker_sys.addaudithook(hook)


def _sqlite_opened() -> list[str]:
    import sys as worker_sys

    return list(getattr(worker_sys, "_marketpipe_opened", []))


def test_workers_never_open_the_catalog_or_the_job_store(cluster: Client, tmp_path: Path) -> None:
    """The client alone keeps the books: workers write bar files and report them; no worker
    process opens a SQLite file of the dataset (SQLite over a shared folder, written by many
    machines, is what SQLite's documentation warns against)."""
    with _by_value():
        cluster.run(_watch_sqlite_opens)
    root = tmp_path / "data"
    before = sum(cluster.run(units_run).values())
    # Two jobs: the second replaces rows the first committed, which needs to know which files
    # hold them (the catalog's question, answered on the worker from the files themselves).
    first = (*JOB[:5], "--start", "2024-01-02", "--end", "2024-01-12", "--batch-size", "2000")
    mp(*first, "--data-dir", str(root), "--scheduler", cluster.scheduler.address, env=QUIET,
       check=True)  # fmt: skip
    out = mp_json(*first, "--refresh", "--data-dir", str(root), "--scheduler",
                  cluster.scheduler.address, env=QUIET)  # fmt: skip
    assert out["state"] == "COMPLETED"  # type: ignore[index]
    assert sum(cluster.run(units_run).values()) - before > 2
    opened = [o for found in cluster.run(_sqlite_opened).values() for o in found]
    assert [o for o in opened if str(root) in o] == []
    # The client's books agree with the files the workers wrote.
    assert mp_json("verify", "--data-dir", str(root), env=QUIET)["ok"] is True  # type: ignore[index]
    assert len(rows(root)) == 4 * 9 * 390
