"""Corporate actions and renames from Massive's REST API, kept in the ledger and applied at read
time to the raw flat-file bars."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import marketpipe
import pyarrow as pa
import pyarrow.compute as pc
from marketpipe_massive.testing import API_KEY, MassiveServer
from massive_helpers import ingest, mp


def closes(table: pa.Table, symbol: str, day: str) -> list[float]:
    days = pc.strftime(table["timestamp"], "%F", locale="C")
    mine = pc.and_(pc.equal(table["symbol"], symbol), pc.equal(days, day))
    return table.filter(mine)["close"].to_pylist()


def test_a_split_read_adjusted_a_rename_read_as_one_series_and_paged_answers(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    server.page_limit = 1  # every answer pages: next_url is followed, with the key re-sent
    summary = ingest(server, tmp_path, "--symbols", "AAPL,MSFT,OLDCO,NEWCO", "--start", "2024-03-04",
                     "--end", "2024-03-08", "--timeframe", "1d")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    assert API_KEY not in str(summary)

    raw = marketpipe.read(tmp_path, provider="massive", symbols=["MSFT"], start="2024-03-04",
                          end="2024-03-08", timeframe="1d")  # fmt: skip
    adjusted = marketpipe.read(tmp_path, provider="massive", symbols=["MSFT"],
                               start="2024-03-04", end="2024-03-08", timeframe="1d",
                               adjustment="split")  # fmt: skip
    # 2-for-1 on 2024-03-07: the days before are halved, the days from it are as stored
    assert closes(adjusted, "MSFT", "2024-03-05") == [closes(raw, "MSFT", "2024-03-05")[0] / 2]
    assert closes(adjusted, "MSFT", "2024-03-07") == closes(raw, "MSFT", "2024-03-07")

    # OLDCO became NEWCO on 2024-03-08: asking for NEWCO gives the company's whole week
    company = marketpipe.read(tmp_path, provider="massive", symbols=["NEWCO"],
                              start="2024-03-04", end="2024-03-08", timeframe="1d")  # fmt: skip
    assert company.num_rows == 5
    assert set(company["symbol"].to_pylist()) == {"NEWCO"}

    # the dividend and the split are in the ledger, as Massive sent them
    listed = mp(server, "actions", "--data-dir", str(tmp_path), "--symbols", "MSFT", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = sorted(a["kind"] for a in json.loads(listed.stdout)["actions"])
    assert kinds == ["cash_dividend", "forward_split"]
    pages = [r for r in server.requests if r.path == "/stocks/v1/dividends"]
    assert len(pages) == 2 and pages[1].query["cursor"] == "1"  # AAPL's, then MSFT's
    assert all("apiKey" not in r.query for r in pages)


def test_a_factor_that_disagrees_with_the_splits_is_reported(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    server.splits[0]["historical_adjustment_factor"] = 0.25  # the 2-for-1 says 0.5
    summary = ingest(server, tmp_path, "--symbols", "MSFT", "--start", "2024-03-06",
                     "--end", "2024-03-07", "--timeframe", "1d")  # fmt: skip
    assert summary["exit"] == 0, summary["stderr"]
    assert "historical adjustment factor 0.25 differs from the splits' own product 0.5" in str(
        summary["stderr"]
    )


def test_without_the_rest_key_the_bars_still_land_and_the_actions_are_named_missing(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    summary = ingest(server, tmp_path, "--symbols", "MSFT", "--start", "2024-03-06",
                     "--end", "2024-03-07", "--timeframe", "1d",
                     env={"MARKETPIPE_MASSIVE_API_KEY": ""})  # fmt: skip
    assert summary["bars"] == 2
    notes = " ".join(summary["notes"])  # type: ignore[arg-type]
    assert "corporate actions" in notes and "MARKETPIPE_MASSIVE_API_KEY" in notes, notes


def test_a_whole_market_asks_in_bulk_not_a_request_a_symbol(
    server: MassiveServer, market: dict[dt.date, pa.Table], tmp_path: Path
) -> None:
    from marketpipe_massive import provider as provider_module

    # the old name, delisted the day the new one began, under the company's FIGI
    newco = next(t for t in server.tickers if t["ticker"] == "NEWCO")
    server.tickers.append({**newco, "ticker": "OLDCO", "active": False,
                           "delisted_utc": "2024-03-08T00:00:00Z"})  # fmt: skip
    massive = provider_module.MassiveProvider(**server.settings())
    symbols = ["OLDCO", "MSFT", *[f"X{i:03d}" for i in range(provider_module.ACTION_TICKERS)]]
    table = massive.fetch_actions(symbols, dt.date(2024, 3, 1), dt.date(2024, 3, 29))
    found = sorted(
        (r["kind"], r["symbol"], r["new_symbol"], r["ex_date"]) for r in table.to_pylist()
    )
    assert found == [  # AAPL's dividend is the market's, not asked for
        ("cash_dividend", "MSFT", None, dt.date(2024, 3, 6)),
        ("forward_split", "MSFT", None, dt.date(2024, 3, 7)),
        ("name_change", "OLDCO", "NEWCO", dt.date(2024, 3, 8)),
    ]
    assert not [r for r in server.requests if r.path.endswith("/events")]
    paths = [r.path for r in server.requests]
    assert paths.count("/v3/reference/tickers") == 2
    assert paths.count("/stocks/v1/splits") == paths.count("/stocks/v1/dividends") == 1
    assert not [r for r in server.requests if "ticker.any_of" in r.query]
