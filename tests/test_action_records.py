"""Corporate-action records that once read wrong: two dividends of one company on one ex-date,
and a split ratio no company ever made. Against the local Alpaca server, through the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import marketpipe
import pyarrow.compute as pc
import pytest
from cli_helpers import mp
from marketpipe.model.actions import actions_table
from marketpipe.storage.ledger import Ledger
from marketpipe.storage.location import dataset_root
from marketpipe.storage.stores import open_store
from marketpipe_alpaca.testing import FakeAlpacaServer
from test_restatement import KEY, SECRET, as_read, assert_same, env_at, served

TODAY = dt.date(2024, 8, 30)


def ingest(server: FakeAlpacaServer, root: Path, symbol: str) -> dict:
    out = mp("ingest", "--provider", "alpaca", "--symbols", symbol, "--timeframe", "1d",
             "--start", "2024-03-01", "--end", str(TODAY), "--data-dir", str(root), "--json",
             env=env_at(server, TODAY))  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_regular_and_a_special_dividend_on_one_ex_date_both_apply(tmp_path: Path) -> None:
    dividends = [
        {"type": "cash_dividends", "id": "div-regular", "symbol": "MSFT", "rate": 0.75,
         "special": False, "foreign": False, "ex_date": "2024-05-15", "process_date": "2024-05-01"},
        {"type": "cash_dividends", "id": "div-special", "symbol": "MSFT", "rate": 3.0,
         "special": True, "foreign": False, "ex_date": "2024-05-15", "process_date": "2024-05-01"},
    ]  # fmt: skip
    with FakeAlpacaServer(KEY, SECRET, actions=dividends, today=TODAY) as server:
        root = tmp_path / "data"
        ingest(server, root, "MSFT")
        ours = marketpipe.read(root, provider="alpaca", symbols=["MSFT"], start="2024-03-01",
                               end=str(TODAY), timeframe="1d", adjustment="dividend")  # fmt: skip
        want = served(server, "MSFT", "dividend", TODAY, "2024-03-01")
        assert_same(as_read(ours), want)
        raw = as_read(marketpipe.read(root, provider="alpaca", symbols=["MSFT"],
                                      start="2024-03-01", end=str(TODAY), timeframe="1d"))  # fmt: skip
        before = ("MSFT", dt.date(2024, 5, 14))
        close = raw[before][3]
        expected = close * (1 - 0.75 / close) * (1 - 3.0 / close)
        assert as_read(ours)[before][3] == pytest.approx(expected, rel=1e-9)


def test_an_absurd_split_ratio_is_set_aside_and_never_applied(tmp_path: Path) -> None:
    absurd = {"type": "forward_splits", "id": "split-absurd", "symbol": "NVDA", "old_rate": 1,
              "new_rate": 1e20, "ex_date": "2024-06-10", "process_date": "2024-06-01"}  # fmt: skip
    with FakeAlpacaServer(KEY, SECRET, actions=[absurd], today=TODAY) as server:
        root = tmp_path / "data"
        out = ingest(server, root, "NVDA")
        assert any("implausible split ratio 1e+20-for-1" in n for n in out["notes"]), out["notes"]
        listed = mp("actions", "--rejected", "--data-dir", str(root), "--json")
        assert listed.returncode == 0, listed.stderr
        [record] = json.loads(listed.stdout)["actions"]
        assert record["id"] == "split-absurd"
        read = mp("read", "--provider", "alpaca", "--symbols", "NVDA", "--start", "2024-03-01",
                  "--end", str(TODAY), "--timeframe", "1d", "--adjustment", "split",
                  "--data-dir", str(root), "--format", "csv")  # fmt: skip
        assert read.returncode == 0, read.stderr
        assert "-9223372036854775808" not in read.stdout
        kw = dict(provider="alpaca", symbols=["NVDA"], start="2024-03-01", end=str(TODAY),
                  timeframe="1d")  # fmt: skip
        split = marketpipe.read(root, adjustment="split", **kw)  # type: ignore[arg-type]
        raw = marketpipe.read(root, **kw)  # type: ignore[arg-type]
        assert split.equals(raw)
        assert pc.min(split["volume"]).as_py() >= 0


def test_a_split_without_an_ex_date_shows_none_and_read_names_the_timeframes_held(
    tmp_path: Path,
) -> None:
    with FakeAlpacaServer(KEY, SECRET, today=TODAY) as server:
        root = tmp_path / "data"
        ingest(server, root, "NVDA")
    undated = {"provider": "alpaca", "id": "split-undated", "kind": "forward_split",
               "symbol": "NVDA", "old_rate": 1.0, "new_rate": 4.0, "ex_date": None,
               "process_date": dt.date(2024, 6, 1), "record": "{}",
               "fetched_at": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}  # fmt: skip
    added = Ledger(open_store(dataset_root(root))).add(actions_table([undated]))
    assert added.rejected.num_rows == 1
    listed = mp("actions", "--rejected", "--data-dir", str(root))
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "NVDA" in line)
    assert "none" in row.split() and "2024-06-01" not in row
    read = mp("read", "--provider", "alpaca", "--symbols", "NVDA", "--start", "2024-03-01",
              "--end", "2024-03-08", "--data-dir", str(root))  # fmt: skip
    assert read.returncode == 2
    assert read.stderr.strip() == (
        "Error: the dataset holds no 1m bars of provider alpaca: it holds 1d "
        "(timeframe=, --timeframe; kind=, --kind)"
    )
