"""The Delta sink driven through the CLI as a user runs it: on a local folder and on a real
S3-compatible server (moto's, on 127.0.0.1), read back by delta-rs, polars and pandas, compared
row for row with the Parquet sink's dataset; SIGKILLed and resumed; two writers at once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from cli_helpers import mp, mp_json
from deltalake import DeltaTable
from marketpipe.model.schema import BAR_COLUMNS, BAR_SCHEMA
from marketpipe.testing.s3 import SECRET, S3Server, s3_server
from marketpipe_alpaca.testing import FakeAlpacaServer

MP = str(Path(sys.executable).with_name("mp"))
TABLE = "fake/sim/raw/1m"
PARQUET_SERIES = "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m"
INGEST = ("ingest", "--provider", "fake", "--symbols", "AAPL,MSFT,SPY")
DAYS = ("--start", "2024-01-29", "--end", "2024-02-02")
QUIET = {"MARKETPIPE_FSYNC": "0"}


def canonical(table: pa.Table) -> pa.Table:
    table = table.select(list(BAR_COLUMNS)).cast(BAR_SCHEMA).replace_schema_metadata(None)
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")]).combine_chunks()


def delta_rows(uri: str | Path, options: dict[str, str] | None = None) -> pa.Table:
    return canonical(DeltaTable(str(uri), storage_options=options).to_pyarrow_table())


def parquet_rows(root: Path, series: str = PARQUET_SERIES) -> pa.Table:
    return canonical(ds.dataset(root / series, format="parquet").to_table())


@pytest.fixture(scope="module")
def parquet_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same bars through the Parquet sink, days 2024-01-29..2024-02-06."""
    root = tmp_path_factory.mktemp("parquet") / "data"
    mp(*INGEST, "--start", "2024-01-29", "--end", "2024-02-06", "--data-dir", str(root),
       env=QUIET, check=True)  # fmt: skip
    return root


def first_week(root: Path) -> pa.Table:
    rows = parquet_rows(root)
    end = pa.scalar(1706936400 * 10**9, pa.timestamp("ns", tz="UTC"))  # 2024-02-03 05:00 UTC
    return rows.filter(pa.compute.less(rows["timestamp"], end))


def test_a_delta_dataset_through_the_cli_equals_parquet_for_every_reader(
    parquet_reference: Path, tmp_path: Path
) -> None:
    root = tmp_path / "delta"
    first = mp_json(*INGEST, *DAYS, "--data-dir", str(root), "--sink", "delta", env=QUIET)
    assert first["state"] == "COMPLETED"  # type: ignore[index]
    table = root / TABLE
    want = first_week(parquet_reference)
    assert want.num_rows == 3 * 5 * 390
    assert delta_rows(table).equals(want)
    assert canonical(pl.read_delta(str(table)).to_arrow()).equals(want)
    frame = DeltaTable(str(table)).to_pandas()
    assert len(frame) == want.num_rows and frame["day"].nunique() == 5

    # Re-ingesting replaces exactly; the table's history names both jobs.
    again = mp_json(*INGEST, *DAYS, "--refresh", "--data-dir", str(root), env=QUIET)
    assert again["partitions_completed"] == 15  # type: ignore[index]
    assert delta_rows(table).equals(want)
    jobs = {h.get("marketpipe.job_id") for h in DeltaTable(str(table)).history()}
    assert {first["job_id"], again["job_id"]} <= jobs  # type: ignore[index]

    # The catalog is read from the coverage table: update fetches only the new sessions.
    later = {**QUIET, "MARKETPIPE_NOW": "2024-02-07T12:00:00Z"}
    update = mp_json("update", "--data-dir", str(root), env=later)
    job = update["series"][0]["job"]  # type: ignore[index]
    assert (job["partitions_stored"], job["partitions_completed"]) == (15, 6)
    assert delta_rows(table).equals(parquet_rows(parquet_reference))
    status = mp_json("status", "--data-dir", str(root), env=QUIET)
    bars = {s["symbol"]: s["bars"] for s in status["series"][0]["symbols"]}  # type: ignore[index]
    assert bars == {"AAPL": 7 * 390, "MSFT": 7 * 390, "SPY": 7 * 390}

    mp("delete", "--provider", "fake", "--symbols", "MSFT", "--start", "2024-02-01", "--yes",
       "--data-dir", str(root), env=QUIET, check=True)  # fmt: skip
    left = delta_rows(table)
    assert left.num_rows == 21 * 390 - 4 * 390
    assert pa.compute.sum(pa.compute.equal(left["symbol"], "MSFT")).as_py() == 3 * 390

    files = len(DeltaTable(str(table)).file_uris())
    compacted = mp_json("compact", "--data-dir", str(root), env=QUIET)
    assert len(DeltaTable(str(table)).file_uris()) == 2 <= files  # one file per month
    assert [f["month"] for f in compacted["folders"]] == ["2024-01", "2024-02"]  # type: ignore[index]
    assert delta_rows(table).equals(left)

    # The table, its coverage and the job store agree (the deleted partitions included).
    verified = mp_json("verify", "--data-dir", str(root), env=QUIET)
    assert verified["ok"] is True, verified  # type: ignore[index]
    assert verified["bars"] == left.num_rows  # type: ignore[index]
    # The dataset keeps its sink; another is refused in one line.
    out = mp(*INGEST, *DAYS, "--sink", "parquet", "--data-dir", str(root), env=QUIET)
    assert out.returncode == 2, out
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "delta sink" in out.stderr


JOB = [
    "ingest", "--provider", "fake", "--symbols", ",".join(f"K{i:02d}" for i in range(12)),
    "--start", "2024-01-02", "--end", "2024-03-29", "--batch-size", "4000", "--sink", "delta",
]  # fmt: skip


def committed_versions(table: Path) -> int:
    log = table / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def test_sigkill_at_random_moments_then_the_same_command_gives_the_same_table(
    tmp_path: Path,
) -> None:
    reference = tmp_path / "reference"
    mp(*JOB, "--data-dir", str(reference), env=QUIET, check=True)
    want = delta_rows(reference / TABLE)
    assert want.num_rows == 12 * 61 * 390
    root = tmp_path / "data"
    rng = random.Random(20261129)
    marks = sorted(rng.sample(range(2, 40), 5))
    for mark in marks:
        proc = subprocess.Popen([MP, *JOB, "--data-dir", str(root), "--json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **QUIET})  # fmt: skip
        deadline = time.monotonic() + 120
        while committed_versions(root / TABLE) < mark:  # wait for the job to reach its mark
            assert proc.poll() is None, "the job ended before its kill"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        assert proc.poll() is None, "the job ended before its kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = mp_json(*JOB, "--data-dir", str(root), env=QUIET)
    assert final["state"] == "COMPLETED"  # type: ignore[index]
    assert [j["state"] for j in mp_json("jobs", "list", "--data-dir", str(root))] == [  # type: ignore[union-attr]
        "COMPLETED"
    ]
    assert delta_rows(root / TABLE).equals(want)  # nothing lost, nothing twice
    # What the job store says it committed is what the table holds.
    status = mp_json("status", "--data-dir", str(root), env=QUIET)
    assert sum(s["bars"] for s in status["series"][0]["symbols"]) == want.num_rows  # type: ignore[index]


# --- in object storage ---------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def env_of(s3: S3Server, state: Path, **more: str) -> dict[str, str]:
    return {**s3.env(), "MARKETPIPE_STATE_DIR": str(state), **QUIET, **more}


def reader_options(s3: S3Server) -> dict[str, str]:
    return {**s3.env(), "AWS_ALLOW_HTTP": "true"}


def test_delta_on_s3_equals_local_for_delta_rs_and_polars_and_a_second_machine_updates(
    s3: S3Server, parquet_reference: Path, tmp_path: Path
) -> None:
    url = f"s3://{s3.bucket('lake')}/team"
    env = env_of(s3, tmp_path / "state-a")
    out = mp_json(*INGEST, *DAYS, "--data-dir", url, "--sink", "delta", env=env)
    assert out["state"] == "COMPLETED"  # type: ignore[index]
    want = first_week(parquet_reference)
    assert delta_rows(f"{url}/{TABLE}", reader_options(s3)).equals(want)
    polars_rows = pl.read_delta(f"{url}/{TABLE}", storage_options=reader_options(s3))
    assert canonical(polars_rows.to_arrow()).equals(want)

    again = mp_json(*INGEST, *DAYS, "--refresh", "--data-dir", url, env=env)
    assert again["partitions_completed"] == 15  # type: ignore[index]
    assert delta_rows(f"{url}/{TABLE}", reader_options(s3)).equals(want)

    # Another machine: its catalog comes from the bucket's coverage table.
    other = env_of(s3, tmp_path / "state-b", MARKETPIPE_NOW="2024-02-07T12:00:00Z")
    update = mp_json("update", "--data-dir", url, env=other)
    job = update["series"][0]["job"]  # type: ignore[index]
    assert (job["partitions_stored"], job["partitions_completed"]) == (15, 6)
    assert delta_rows(f"{url}/{TABLE}", reader_options(s3)).equals(parquet_rows(parquet_reference))
    compacted = mp_json("compact", "--data-dir", url, env=other)
    assert len(compacted["folders"]) == 2  # type: ignore[index]
    assert delta_rows(f"{url}/{TABLE}", reader_options(s3)).equals(parquet_rows(parquet_reference))
    for state in (tmp_path / "state-a", tmp_path / "state-b"):
        for path in state.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("sink", ["parquet", "delta"])
def test_alpaca_bars_into_s3_equal_the_same_ingest_on_disk(
    s3: S3Server, tmp_path: Path, sink: str
) -> None:
    """The local Alpaca server's bars into the bucket, through either sink, read back with
    pyarrow's S3 file system (Parquet) or delta-rs (Delta)."""
    with FakeAlpacaServer("PKDELTA00000001", "SKDELTA00000002") as server:
        env = {
            "APCA_API_KEY_ID": "PKDELTA00000001",
            "APCA_API_SECRET_KEY": "SKDELTA00000002",
            "MARKETPIPE_ALPACA_BASE_URL": server.url,
            "MARKETPIPE_NOW": "2024-03-20T12:00:00Z",
        }
        job = ("ingest", "--provider", "alpaca", "--symbols", "AAPL,TSLA",
               "--start", "2024-03-11", "--end", "2024-03-15")  # fmt: skip
        url = f"s3://{s3.bucket('alpaca')}/bars"
        mp(*job, "--data-dir", url, "--sink", sink,
           env={**env, **env_of(s3, tmp_path / "state")}, check=True)  # fmt: skip
        mp(*job, "--data-dir", str(tmp_path / "local"), env={**env, **QUIET}, check=True)
    series = "bars/provider=alpaca/feed=iex/adjustment=raw/timeframe=1m"
    want = parquet_rows(tmp_path / "local", series)
    assert want.num_rows > 0
    if sink == "delta":
        got = delta_rows(f"{url}/alpaca/iex/raw/1m", reader_options(s3))
    else:
        fs = pafs.S3FileSystem(access_key=s3.env()["AWS_ACCESS_KEY_ID"], secret_key=SECRET,
                               endpoint_override=s3.endpoint, scheme="http", region="us-east-1")  # fmt: skip
        got = canonical(ds.dataset(f"alpaca/bars/{series}", filesystem=fs).to_table())
    assert got.equals(want)
    for path in (tmp_path / "state").rglob("*"):  # neither key nor secret of either service
        if path.is_file():
            body = path.read_bytes()
            assert b"SKDELTA00000002" not in body and SECRET.encode() not in body, path
