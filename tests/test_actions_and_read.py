"""Corporate actions end to end with the Fake market, offline: ingest keeps the actions of the
symbols it touched in the dataset's ledger, ``mp update`` adds those announced since, and
``marketpipe.read`` / ``mp read`` adjust the stored raw bars at read time, as of any day, and
follow a rename."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import marketpipe
import pytest
from cli_helpers import mp, mp_json

QUIET = {"MARKETPIPE_FSYNC": "0"}
# MSFT: a 2-for-1 split ex 2024-09-03, announced 2024-08-24; OLDCO becomes NEWCO on 2024-06-20.
JOB = ("ingest", "--provider", "fake", "--symbols", "MSFT,OLDCO,NEWCO", "--timeframe", "1d",
       "--start", "2024-01-02", "--end", "2024-08-15")  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ingested in mid-August (before the split was announced), updated at the end of
    September."""
    root = tmp_path_factory.mktemp("actions") / "data"
    first = mp_json(*JOB, "--data-dir", str(root),
                    env={**QUIET, "MARKETPIPE_NOW": "2024-08-15T23:00:00Z"})  # fmt: skip
    assert first["state"] == "COMPLETED"  # type: ignore[index]
    assert any("name change to NEWCO" in n for n in first["notes"])  # type: ignore[index]
    assert not any("split" in n for n in first["notes"])  # type: ignore[index]
    update = mp_json("update", "--data-dir", str(root),
                     env={**QUIET, "MARKETPIPE_NOW": "2024-09-30T23:00:00Z"})  # fmt: skip
    notes = update["notes"]  # type: ignore[index]  # the ledger is refreshed before planning
    assert any("MSFT forward split 2-for-1, ex 2024-09-03" in n for n in notes), notes
    return root


def test_the_ledger_lists_what_the_jobs_learnt(dataset: Path) -> None:
    listed = mp_json("actions", "--data-dir", str(dataset), "--symbols", "MSFT,NEWCO")
    kinds = [(a["symbol"], a["kind"], a["ex_date"]) for a in listed["actions"]]  # type: ignore[index]
    assert kinds == [("OLDCO", "name_change", "2024-06-20"),
                     ("MSFT", "forward_split", "2024-09-03")]  # fmt: skip
    before = mp_json("actions", "--data-dir", str(dataset), "--as-of", "2024-08-20")
    assert [a["kind"] for a in before["actions"]] == ["name_change"]  # type: ignore[index]


def test_split_adjusted_reads_derive_from_the_raw_bars(dataset: Path) -> None:
    kw = dict(provider="fake", symbols=["MSFT"], start="2024-08-26", end="2024-09-06",
              timeframe="1d")  # fmt: skip
    raw = marketpipe.read(dataset, **kw)  # type: ignore[arg-type]
    split = marketpipe.read(dataset, adjustment="split", **kw)  # type: ignore[arg-type]
    days = [t.date().isoformat() for t in raw["timestamp"].to_pylist()]
    assert days[:5] == ["2024-08-26", "2024-08-27", "2024-08-28", "2024-08-29", "2024-08-30"]
    assert days[5] == "2024-09-03"
    for name in ("open", "high", "low", "close", "vwap"):
        want = [v / 2 for v in raw[name].to_pylist()[:5]] + raw[name].to_pylist()[5:]
        assert split[name].to_pylist() == pytest.approx(want, rel=1e-12)
    assert split["volume"].to_pylist() == (
        [v * 2 for v in raw["volume"].to_pylist()[:5]] + raw["volume"].to_pylist()[5:]
    )
    assert split["trade_count"].to_pylist() == raw["trade_count"].to_pylist()
    # As of a day before the split was announced, the series is as a user saw it then.
    then = marketpipe.read(dataset, adjustment="split", as_of="2024-08-20", **kw)  # type: ignore[arg-type]
    assert then.equals(raw)


def test_a_renamed_company_reads_as_one_series_under_its_new_name(dataset: Path) -> None:
    bars = marketpipe.read(dataset, provider="fake", symbols=["NEWCO"], start="2024-06-14",
                           end="2024-06-25", timeframe="1d")  # fmt: skip
    assert set(bars["symbol"].to_pylist()) == {"NEWCO"}
    assert [t.date().isoformat() for t in bars["timestamp"].to_pylist()] == [
        "2024-06-14", "2024-06-17", "2024-06-18", "2024-06-20", "2024-06-21", "2024-06-24",
        "2024-06-25",
    ]  # fmt: skip
    stored = duckdb.sql(
        f"SELECT symbol, count(*) FROM read_parquet('{dataset}/**/*.parquet') "
        "WHERE symbol <> 'MSFT' AND timestamp BETWEEN '2024-06-14' AND '2024-06-26' "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert stored == [("NEWCO", 4), ("OLDCO", 3)]  # stored under the names of their days


def test_mp_read_writes_csv_and_says_no_to_bad_input(dataset: Path) -> None:
    out = mp("read", "--data-dir", str(dataset), "--provider", "fake", "--symbols", "MSFT",
             "--start", "2024-08-29", "--end", "2024-09-04", "--timeframe", "1d",
             "--adjustment", "all", check=True)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["symbol"] for r in rows] == ["MSFT"] * 4
    wrong = mp("read", "--data-dir", str(dataset), "--provider", "fake", "--symbols", "MSFT",
               "--start", "2024-08-29", "--end", "2024-09-04", "--adjustment", "both")  # fmt: skip
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == (
        "Error: unknown adjustment 'both': use one of raw, split, dividend, all"
    )
    when = mp("read", "--data-dir", str(dataset), "--provider", "fake", "--symbols", "MSFT",
              "--start", "2024-08-29", "--end", "2024-09-04", "--as-of", "soon")  # fmt: skip
    assert when.returncode == 2 and "as_of must be a date" in when.stderr


def test_bar_readers_never_see_the_ledger(dataset: Path) -> None:
    assert list((dataset / "_marketpipe" / "actions").glob("*.arrow"))
    files = duckdb.sql(
        f"SELECT count(DISTINCT filename) FROM read_parquet('{dataset}/**/*.parquet', "
        "filename = true) WHERE filename LIKE '%_marketpipe%'"
    ).fetchall()
    assert files == [(0,)]
