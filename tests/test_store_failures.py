"""Object storage failing under a job, for both sinks: the endpoint gone mid-job (connections
refused, open ones cut) ends the job FAILED in one line with only whole units visible, and the
same command resumes once it is back; ``503 SlowDown`` answers are retried by the shared policy.
A relay on 127.0.0.1 stands between the CLI and moto's server, which keeps its objects."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from cli_helpers import mp
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from marketpipe.model.schema import BAR_COLUMNS, BAR_SCHEMA
from marketpipe.testing.s3 import SECRET, FaultyEndpoint, S3Server, faulty_endpoint, s3_server

MP = str(Path(sys.executable).with_name("mp"))
# Six symbols over 31 sessions in units of about 1,000 bars: some 70 units, each a commit of
# several requests to the store, so a failure or a kill lands well inside the job.
SYMBOLS = ",".join(f"K{i:02d}" for i in range(6))
JOB = ["ingest", "--provider", "fake", "--symbols", SYMBOLS, "--start", "2024-01-02",
       "--end", "2024-02-14", "--batch-size", "1000", "--json"]  # fmt: skip
PARTITIONS = 6 * 31  # 31 sessions from 2024-01-02 to 2024-02-14
BARS = PARTITIONS * 390


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    root = tmp_path_factory.mktemp("reference") / "data"
    mp(*JOB, "--data-dir", str(root), env={"MARKETPIPE_FSYNC": "0"}, check=True)
    rows = canonical(
        ds.dataset(root / "bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m").to_table()
    )
    assert rows.num_rows == BARS
    return rows


def canonical(table: pa.Table) -> pa.Table:
    table = table.select(list(BAR_COLUMNS)).cast(BAR_SCHEMA).replace_schema_metadata(None)
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")]).combine_chunks()


def stored(s3: S3Server, sink: str, url: str) -> pa.Table:
    """What a reader of the bucket sees, read past the relay."""
    if sink == "delta":
        options = {**s3.env(), "AWS_ALLOW_HTTP": "true"}
        try:
            table = DeltaTable(f"{url}/fake/sim/raw/1m", storage_options=options)
        except TableNotFoundError:
            return BAR_SCHEMA.empty_table()
        return canonical(table.to_pyarrow_table())
    fs = pafs.S3FileSystem(access_key=s3.env()["AWS_ACCESS_KEY_ID"], secret_key=SECRET,
                           endpoint_override=s3.endpoint, scheme="http", region="us-east-1")  # fmt: skip
    where = f"{url.removeprefix('s3://')}/bars/provider=fake/feed=sim/adjustment=raw/timeframe=1m"
    if fs.get_file_info(where).type == pafs.FileType.NotFound:
        return BAR_SCHEMA.empty_table()
    return canonical(ds.dataset(where, filesystem=fs, format="parquet").to_table())


def only_whole_units(rows: pa.Table, reference: pa.Table) -> None:
    """Every stored row is the reference's, none twice, and every (symbol, day) is whole."""
    keys = pc.binary_join_element_wise(
        rows["symbol"], pc.cast(rows["timestamp"].cast(pa.int64()), pa.string()), "|"
    )
    assert pc.count_distinct(keys).as_py() == rows.num_rows, "a row is stored twice"
    ref_keys = pc.binary_join_element_wise(
        reference["symbol"], pc.cast(reference["timestamp"].cast(pa.int64()), pa.string()), "|"
    )
    assert pc.all(pc.is_in(keys, value_set=ref_keys)).as_py() in (True, None)
    days = pc.cast(pc.local_timestamp(rows["timestamp"].cast(
        pa.timestamp("ns", tz="America/New_York"))), pa.date32())  # fmt: skip
    per_day = (
        pa.table({"s": rows["symbol"], "d": days}).group_by(["s", "d"]).aggregate([("s", "count")])
    )
    assert set(per_day["s_count"].to_pylist()) <= {390}, "a partial day is visible"


def ours(stderr: str) -> list[str]:
    """stderr without the panic notice delta-rs's Rust runtime prints when an upload is cut
    (apache/arrow-rs-object-store#810, a worker thread's, which the process survives): from
    ``thread '...' panicked at`` to the ``note:`` line Rust's panic hook always ends it with."""
    lines = []
    panic = False
    for line in stderr.strip().splitlines():
        if line.startswith("thread '") and "panicked at" in line:
            panic = True
        elif panic and line.startswith("note:"):
            panic = False
        elif not panic and line.strip():  # two notices are parted by an empty line
            lines.append(line)
    return lines


def run(
    relay: FaultyEndpoint,
    state: Path,
    sink: str,
    url: str,
    retry_seconds: str = "5",
) -> subprocess.Popen[str]:
    """The job through the relay; the store is given up on after ``retry_seconds``."""
    env = {**os.environ, **relay.env(), "MARKETPIPE_STATE_DIR": str(state),
           "MARKETPIPE_FSYNC": "0", "MARKETPIPE_STORE_RETRY_SECONDS": retry_seconds}  # fmt: skip
    return subprocess.Popen(
        [MP, *JOB, "--data-dir", url, "--sink", sink],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sink", ["parquet", "delta"])
def test_a_store_gone_mid_job_fails_it_in_one_line_and_the_same_command_resumes(
    s3: S3Server, reference: pa.Table, tmp_path: Path, sink: str
) -> None:
    url = f"s3://{s3.bucket('bars')}/team"
    with faulty_endpoint(s3) as relay:
        proc = run(relay, tmp_path / "state", sink, url)
        deadline = time.monotonic() + 120
        # Well into the job: about half its partitions committed (Parquet's store sees some 80
        # requests for the bars, Delta's some 270).
        while relay.relayed < {"parquet": 35, "delta": 120}[sink]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        relay.down()
        gone = time.monotonic()
        out, err = proc.communicate(timeout=300)
        assert time.monotonic() - gone < 120  # bounded by the retry policy, not hung
        summary = json.loads(out)
        assert summary["state"] == "FAILED"
        assert proc.returncode == 75, err  # the store out of reach: try again later
        assert 0 < summary["partitions_completed"] < PARTITIONS
        assert "Traceback" not in err, err
        assert len(ours(err)) == 1, err
        assert "failed" in err and ("s3://bars/team" in err) and SECRET not in err
        # A reader sees only whole units, each once: those the job recorded, maybe one more
        # whose commit was cut after its bars were in.
        visible = stored(s3, sink, url)
        assert visible.num_rows >= summary["bars"] > 0
        only_whole_units(visible, reference)

        relay.up()
        again = run(relay, tmp_path / "state", sink, url)
        out, err = again.communicate(timeout=600)
        assert again.returncode == 0, err
        summary = json.loads(out)
        assert (summary["state"], summary["resumed"]) == ("COMPLETED", True)
    assert stored(s3, sink, url).equals(reference)


@pytest.mark.parametrize("sink", ["parquet", "delta"])
def test_slow_down_answers_are_retried_by_the_shared_policy(
    s3: S3Server, reference: pa.Table, tmp_path: Path, sink: str
) -> None:
    url = f"s3://{s3.bucket('bars')}/team"
    with faulty_endpoint(s3) as relay:
        relay.slow_down(4)  # the first request is retried four times: the policy allows five
        proc = run(relay, tmp_path / "state", sink, url, retry_seconds="120")
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert json.loads(out)["state"] == "COMPLETED"
        assert relay.throttled == 4  # every 503 was answered, and retried past
    assert stored(s3, sink, url).equals(reference)


@pytest.mark.parametrize("sink", ["parquet", "delta"])
def test_sigkill_at_random_moments_on_s3_then_the_same_command_gives_the_same_dataset(
    s3: S3Server, reference: pa.Table, tmp_path: Path, sink: str
) -> None:
    """A writer killed mid-commit leaves its lease behind (Parquet): the next run, on the same
    machine, takes it over at once (its holder is gone), long before the minute it would hold."""
    url = f"s3://{s3.bucket('bars')}/team"
    rng = random.Random(20261129)
    with faulty_endpoint(s3) as relay:
        # Four kills while bars are committed (some 80 requests to Parquet's store for the whole
        # job, 270 to Delta's): each run resumes what the one before left.
        for mark in rng.sample(range(5, {"parquet": 20, "delta": 65}[sink]), 4):
            proc = run(relay, tmp_path / "state", sink, url)
            deadline = time.monotonic() + 120
            while relay.relayed < mark:  # kill once the job has made ``mark`` more requests
                assert proc.poll() is None, "the job ended before its kill"
                assert time.monotonic() < deadline
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            relay.relayed = 0
            only_whole_units(stored(s3, sink, url), reference)
        final = run(relay, tmp_path / "state", sink, url)
        out, err = final.communicate(timeout=600)
        assert final.returncode == 0, err
        summary = json.loads(out)
        assert (summary["state"], summary["resumed"]) == ("COMPLETED", True)
    assert stored(s3, sink, url).equals(reference)


@pytest.mark.parametrize("sink", ["parquet", "delta"])
def test_two_writers_on_one_dataset_in_s3(
    s3: S3Server, reference: pa.Table, tmp_path: Path, sink: str
) -> None:
    """Two machines (state folders) ingest overlapping symbols at once: Parquet commits into
    a month one writer at a time (the lease), Delta orders the transactions in its log; either
    way no row is stored twice."""
    url = f"s3://{s3.bucket('shared')}/d"
    symbols = SYMBOLS.split(",")
    procs = []
    for n, mine in enumerate((symbols[:8], symbols[4:])):
        job = [*JOB[:4], ",".join(mine), *JOB[5:9], "--batch-size", "2000", "--json"]
        env = {**os.environ, **s3.env(), "MARKETPIPE_STATE_DIR": str(tmp_path / f"state-{n}"),
               "MARKETPIPE_FSYNC": "0"}  # fmt: skip
        procs.append(
            subprocess.Popen([MP, *job, "--data-dir", url, "--sink", sink], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err + out[-3000:]
        assert json.loads(out)["state"] == "COMPLETED"
    assert stored(s3, sink, url).equals(reference)


def test_a_store_unanswered_through_every_retry_is_taken_for_down_for_as_long_again(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a request went unanswered through the whole retry policy, the store's next calls
    (another unit's commit, a lease's release) fail at once rather than wait as long again
    each; after the policy's time the store is asked again."""
    import obstore
    from marketpipe.model.errors import StoreUnavailableError
    from marketpipe.storage import object_store
    from marketpipe.storage.object_store import ObjectStore

    monkeypatch.setattr(object_store, "_DOWN", {})  # this test's alone
    with faulty_endpoint(s3) as relay:
        for key, value in {**relay.env(), "MARKETPIPE_STORE_RETRY_SECONDS": "2"}.items():
            monkeypatch.setenv(key, value)
        store = ObjectStore(f"s3://{s3.bucket('down')}/d")
        asked: list[str] = []
        real = obstore.list_with_delimiter

        def counted(*args: object, **kwargs: object) -> object:
            asked.append("list")
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(obstore, "list_with_delimiter", counted)
        assert store.listing("bars") == {}
        relay.down()
        with pytest.raises(StoreUnavailableError, match="failed"):
            store.listing("bars")  # through every retry
        assert len(asked) == 2
        for _ in range(3):
            with pytest.raises(StoreUnavailableError, match="failed"):
                store.listing("bars")
            with pytest.raises(StoreUnavailableError, match="failed"):
                store.create("_marketpipe/x", b"x")
        assert len(asked) == 2  # not asked again
        other = ObjectStore(f"s3://{s3.bucket('down')}/elsewhere")  # the ledger's, say
        with pytest.raises(StoreUnavailableError, match="failed"):
            other.listing("bars")
        assert len(asked) == 2
        relay.up()
        [(where, (when, error))] = object_store._DOWN.items()  # the bucket behind the relay
        monkeypatch.setitem(object_store._DOWN, where, (when - 3, error))  # 2 s went by
        assert store.listing("bars") == {} and len(asked) == 3
