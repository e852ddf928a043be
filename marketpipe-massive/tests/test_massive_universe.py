"""The security master: Massive's tickers, listed and delisted, and the universe of any day."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import marketpipe
import pyarrow as pa
from marketpipe_massive.testing import MassiveServer
from massive_helpers import ingest, mp


def day_bars(server: MassiveServer, data: Path, start: str, end: str) -> None:
    """The whole market's day bars of ``start`` to ``end`` ingested into ``data``."""
    summary = ingest(server, data, "--all-symbols", "--timeframe", "1d", "--start", start,
                     "--end", end)  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]


def test_the_universe_of_a_day_has_the_delisted_and_the_names_of_that_day(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    day_bars(server, tmp_path, "2024-03-04", "2024-03-08")
    out = mp(server, "symbols", "--provider", "massive", "--fetch", "--all", "--data-dir",
             str(tmp_path), "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    listed = {row["symbol"]: row for row in json.loads(out.stdout)["symbols"]}
    assert sorted(listed) == ["AAPL", "BRK.B", "GONE", "IPO", "MSFT", "NEWCO", "ZVZZT"]
    assert listed["GONE"]["active"] is False and listed["GONE"]["last_day"] == "2024-03-06"

    def names(day: str, **kw: bool) -> list[str]:
        table = marketpipe.universe(tmp_path, provider="massive", as_of=day, **kw)
        return table["symbol"].to_pylist()

    # before the delisting and the rename: GONE is there, and NEWCO is still OLDCO
    assert names("2024-03-05") == ["AAPL", "BRK.B", "GONE", "IPO", "MSFT", "OLDCO", "ZVZZT"]
    # Massive's list has no listing day: IPO counts as listed, but it did not trade yet
    assert names("2024-03-05", traded=True) == ["AAPL", "BRK.B", "GONE", "MSFT", "OLDCO",
                                                 "ZVZZT"]  # fmt: skip
    # after: GONE is not, and OLDCO trades as NEWCO from the 8th
    assert names("2024-03-07", traded=True) == ["AAPL", "BRK.B", "IPO", "MSFT", "OLDCO",
                                                 "ZVZZT"]  # fmt: skip
    assert "NEWCO" in names("2024-03-08") and "OLDCO" not in names("2024-03-08")

    # the universe goes straight into read: every one of that day's symbols has its bar
    day = marketpipe.universe(tmp_path, provider="massive", as_of="2024-03-05", traded=True)
    bars = marketpipe.read(tmp_path, provider="massive", symbols=day["symbol"].to_pylist(),
                           start="2024-03-05", end="2024-03-05", timeframe="1d")  # fmt: skip
    assert sorted(bars["symbol"].to_pylist()) == day["symbol"].to_pylist()

    # the same from the command line, as of a day
    out = mp(server, "symbols", "--as-of", "2024-03-07", "--data-dir", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["symbols"]
    assert "GONE" not in [r["symbol"] for r in rows]
    assert {r["symbol"]: r["current_symbol"] for r in rows}["OLDCO"] == "NEWCO"


def test_a_refetch_keeps_a_delisting_as_a_new_version(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    gone = next(t for t in server.tickers if t["ticker"] == "GONE")
    gone.update(active=True)
    del gone["delisted_utc"]
    first = mp(server, "symbols", "--provider", "massive", "--fetch", "--all", "--data-dir",
               str(tmp_path), "--json")  # fmt: skip
    assert json.loads(first.stdout)["fetched"]["new"] == 7
    gone.update(active=False, delisted_utc="2024-03-07T00:00:00Z")
    second = mp(server, "symbols", "--provider", "massive", "--fetch", "--all", "--data-dir",
                str(tmp_path), "--json")  # fmt: skip
    fetched = json.loads(second.stdout)["fetched"]
    assert (fetched["new"], fetched["changed"]) == (0, 1)


def test_the_readme_whole_market_snippet_runs_as_pasted(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    import re
    import subprocess
    import sys

    readme = Path(__file__).parents[2] / "README.md"
    section = readme.read_text().split("### The whole market", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    data = tmp_path / "data"
    day_bars(server, data, "2024-03-04", "2024-03-08")
    fetched = mp(server, "symbols", "--provider", "massive", "--fetch", "--all", "--data-dir",
                 str(data))  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6 symbols, 6 bars"


def test_a_datasets_one_provider_answers_mp_symbols_before_any_instrument_was_fetched(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    day_bars(server, tmp_path, "2024-03-05", "2024-03-05")
    # No instrument master yet: the days stored say what traded, under the one provider held.
    out = mp(server, "symbols", "--as-of", "2024-03-05", "--data-dir", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["symbols"]
    stored = sorted(market[dt.date(2024, 3, 5)]["ticker"].unique().to_pylist())
    assert [r["symbol"] for r in rows] == stored and all(r["traded"] for r in rows)
