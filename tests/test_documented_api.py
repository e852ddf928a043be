"""The README's Python API section, run block by block as a user would paste it: against a
local Alpaca server (its URL swapped for the real one), in a fresh interpreter each."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import marketpipe
import pyarrow.dataset as ds
import pytest
from cli_helpers import HERE
from marketpipe_alpaca.testing import FakeAlpacaServer

README = HERE.parent / "README.md"
KEY, SECRET = "PKTESTKEY0001", "SECRETVALUE0001"


def python_api_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(KEY, SECRET) as s:
        yield s


def run_block(block: str, server: FakeAlpacaServer, cwd: Path) -> str:
    code = block.replace("https://data.alpaca.markets", server.url)
    env = {**os.environ, "APCA_API_SECRET_KEY": SECRET}
    env.pop("APCA_API_KEY_ID", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_section_has_the_documented_examples() -> None:
    blocks = python_api_blocks()
    assert len(blocks) == 4
    joined = "\n".join(blocks)
    for name in (
        'IngestionJobId("AAPL_2024-01-02")',
        "job.domain_events",
        'HeaderTokenAuth("APCA-API-KEY-ID", "APCA-API-SECRET-KEY")',
        "RateLimiter(200, 60.0)",
        "AlpacaClient(config, auth, rate_limiter)",
        "await client.async_fetch_batch",
        "await adapter.fetch_bars_for_symbol",
        "await storage.store_bars",
        "@provider(",
    ):
        assert name in joined, name


def test_job_ids_construction_lifecycle_and_events(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    out = run_block(python_api_blocks()[0], server, tmp_path)
    assert out.splitlines() == [
        "AAPL 2024-01-02",
        "['IngestionJobStarted', 'IngestionBatchProcessed', 'IngestionJobCompleted']",
    ]


def test_the_client_against_a_v2_base_url_with_header_names_only(
    server: FakeAlpacaServer, tmp_path: Path
) -> None:
    before = server.stats.copy()
    out = run_block(python_api_blocks()[1], server, tmp_path)
    rows, columns = out.split(" ", 1)
    assert 300 < int(rows) <= 390  # 14:30 to 20:59, a bar a minute that had trades
    assert columns.strip() == "['symbol', 'timestamp', 'open']"
    # Both headers were sent (the server answers 401 without them), to /v2/..., not /v2/v2/...
    assert server.stats["status_401"] == before["status_401"]
    assert server.stats["status_404"] == before["status_404"]
    assert server.stats["status_200"] >= before["status_200"] + 2


def test_the_adapter_coroutine_and_storage(server: FakeAlpacaServer, tmp_path: Path) -> None:
    out = run_block(python_api_blocks()[2], server, tmp_path).splitlines()
    count, symbol = out[0].split()[:2]
    assert 300 < int(count) <= 390 and symbol == "AAPL"
    path, stored = out[1].split()
    assert stored == count and (tmp_path / "data" / path).is_file()
    table = ds.dataset(tmp_path / "data", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == int(count) and set(table["provider"].to_pylist()) == {"alpaca"}


def test_the_registry_decorator(server: FakeAlpacaServer, tmp_path: Path) -> None:
    assert run_block(python_api_blocks()[3], server, tmp_path).split() == ["390", "7.5"]


def test_the_reading_snippets_run_as_written_on_an_ingested_dataset(tmp_path: Path) -> None:
    from cli_helpers import mp

    mp(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "AAPL,MSFT",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-05",
        check=True,
        cwd=tmp_path,
    )
    mp("resample", "--to", "1h", check=True, cwd=tmp_path)  # another series beside it
    days = ("--start", "2024-03-04", "--end", "2024-03-05")
    mp("ingest", "--provider", "fake", "--symbols", "AAPL,MSFT", *days, "--kind", "trades",
       check=True, cwd=tmp_path)  # fmt: skip
    section = README.read_text().split("## Reading the data", 1)[1].split("\n## ", 1)[0]
    bars_block, trades_block = re.findall(r"```python\n(.*?)```", section, re.S)
    probe = bars_block + (
        "\nassert len(bars) == 4 * 390, len(bars)"  # pyarrow's, the last: one series only
        "\nassert pd.read_parquet('data/bars', filters=[('timeframe', '=', '1m')]).shape[0] == 1560"
    )
    held = marketpipe.read(
        tmp_path / "data", provider="fake", symbols=["AAPL", "MSFT"], start="2024-03-04",
        end="2024-03-05", kind="trades",
    ).num_rows  # fmt: skip
    probe += (
        "\n"
        + trades_block
        + (
            f"\nassert len(trades) == {held} > 4 * 390 * 4, len(trades)"  # pyarrow's, the last
            f"\nassert pd.read_parquet('data/trades').shape[0] == {held}"
            f"\nassert pl.scan_parquet('data/trades/**/*.parquet').collect().height == {held}"
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "AAPL" in done.stdout and "MSFT" in done.stdout  # DuckDB's table
