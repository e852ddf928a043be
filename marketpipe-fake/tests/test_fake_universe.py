"""The Fake market's universe: listings, a delisting and a rename that its bars obey, answered
by ``mp symbols`` and ``marketpipe.universe`` from the dataset's instrument master."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import marketpipe
import pyarrow.compute as pc
from marketpipe_fake.actions import rename_day


def mp(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mp")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MARKETPIPE_NOW": "2024-12-02T12:00:00+00:00"})  # fmt: skip


def test_a_whole_universe_ingest_obeys_listings_and_the_universe_answers_any_day(
    tmp_path: Path,
) -> None:
    data = str(tmp_path)
    out = mp("ingest", "--provider", "fake", "--all-symbols", "--timeframe", "1d", "--start",
             "2024-06-03", "--end", "2024-09-30", "--data-dir", data, "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    bars = marketpipe.read(tmp_path, provider="fake", symbols=["FADED", "DEBUT"],
                           start="2024-06-03", end="2024-09-30", timeframe="1d")  # fmt: skip
    days = {s: pc.strftime(bars.filter(pc.equal(bars["symbol"], s))["timestamp"], "%F")
            for s in ("FADED", "DEBUT")}  # fmt: skip
    assert max(days["FADED"].to_pylist()) == "2024-06-14"  # no bar after its delisting
    assert min(days["DEBUT"].to_pylist()) == "2024-09-03"  # none before its listing

    fetched = mp("symbols", "--provider", "fake", "--fetch", "--all", "--data-dir", data, "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["fetched"]["new"] == 7

    renamed = rename_day("0")
    before = renamed - dt.timedelta(days=1)

    def universe(day: dt.date) -> list[str]:
        return marketpipe.universe(tmp_path, provider="fake", as_of=day)["symbol"].to_pylist()

    assert "FADED" in universe(dt.date(2024, 6, 14)) and "FADED" not in universe(
        dt.date(2024, 6, 17)
    )
    assert "DEBUT" not in universe(dt.date(2024, 8, 30)) and "DEBUT" in universe(
        dt.date(2024, 9, 3)
    )
    assert "OLDCO" in universe(before) and "NEWCO" not in universe(before)
    assert "NEWCO" in universe(renamed) and "OLDCO" not in universe(renamed)

    # the table reads at 80 columns, and says which day
    shown = mp("symbols", "--as-of", "2024-06-14", "--data-dir", data)
    assert shown.returncode == 0, shown.stderr
    assert "FADED" in shown.stdout and "listed on 2024-06-14" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80


def test_symbols_of_a_dataset_without_instruments_say_what_to_do(tmp_path: Path) -> None:
    out = mp("symbols", "--provider", "fake", "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert "no dataset" in out.stderr or "mp symbols --provider fake --fetch" in out.stderr
    assert "Traceback" not in out.stderr


def test_status_of_a_large_series_lists_only_the_symbols_with_gaps(tmp_path: Path) -> None:
    data = str(tmp_path)
    many = ",".join(f"S{i:03d}" for i in range(45))
    out = mp("ingest", "--provider", "fake", "--symbols", many, "--timeframe", "1d", "--start",
             "2024-06-03", "--end", "2024-06-07", "--data-dir", data)  # fmt: skip
    assert out.returncode == 0, out.stderr
    gap = mp("delete", "--provider", "fake", "--symbols", "S007", "--start", "2024-06-05",
             "--end", "2024-06-05", "--yes", "--data-dir", data)  # fmt: skip
    assert gap.returncode == 0, gap.stderr
    shown = mp("status", "--data-dir", data)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split()[0] for line in shown.stdout.splitlines() if line.startswith("S0")]
    assert rows == ["S007"]  # the one with a missing session; the 44 whole ones are counted
    text = " ".join(shown.stdout.split())  # as read, whatever the wrapping at 80 columns
    assert "44 symbol(s) whole" in text and "totals: 1 missing sessions" in text
    every = mp("status", "--all", "--data-dir", data)
    assert len([ln for ln in every.stdout.splitlines() if ln.startswith("S0")]) == 45
