"""Resampling conventions on hand-made minutes, IEX's null-price minutes included."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from marketpipe.dataset.resample import aggregate
from marketpipe.ingestion import Timeframe
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.schema import BAR_SCHEMA

UTC = dt.UTC


def minutes(rows: list[tuple]) -> pa.Table:
    names = ["timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    cols = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    return pa.table({"symbol": ["IEXT"] * len(rows), **cols}).cast(BAR_SCHEMA)


def at(hh: int, mm: int) -> dt.datetime:  # 2024-03-05 (EST: 14:30 UTC is 09:30)
    return dt.datetime(2024, 3, 5, hh, mm, tzinfo=UTC)


def test_null_price_minutes_add_volume_and_trades_but_no_prices() -> None:
    table = minutes(
        [
            (at(14, 30), None, None, None, None, 50, 2, None),  # odd lots only
            (at(14, 31), 10.0, 11.0, 9.5, 10.5, 100, 3, 10.2),
            (at(14, 33), 10.5, 12.0, 10.0, 11.0, 300, 5, 11.0),
            (at(14, 34), None, None, None, None, 20, 1, None),
            (at(14, 35), None, None, None, None, 70, None, None),  # a window of null prices
        ]
    )
    bars = aggregate(table, Timeframe.M5, nyse_calendar()).to_pylist()
    first, second = bars
    assert first["timestamp"] == at(14, 30)
    assert (first["open"], first["high"], first["low"], first["close"]) == (10.0, 12.0, 9.5, 11.0)
    assert first["volume"] == 470 and first["trade_count"] == 11
    assert first["vwap"] == pytest.approx((10.2 * 100 + 11.0 * 300) / 400)
    assert second["timestamp"] == at(14, 35) and second["volume"] == 70
    assert second["open"] is None and second["vwap"] is None and second["trade_count"] is None


def test_daily_bars_hold_the_regular_session_only_stamped_at_new_york_midnight() -> None:
    table = minutes(
        [
            (at(13, 0), 9.0, 9.0, 9.0, 9.0, 1000, 1, 9.0),  # 08:00 pre-market: left out
            (at(14, 30), 10.0, 10.0, 10.0, 10.0, 10, 1, 10.0),
            (at(20, 59), 12.0, 12.0, 12.0, 12.0, 30, 1, 12.0),
            (at(21, 0), 99.0, 99.0, 99.0, 99.0, 5, 1, 99.0),  # 16:00 after the close
        ]
    )
    (bar,) = aggregate(table, Timeframe.D1, nyse_calendar()).to_pylist()
    assert bar["timestamp"] == dt.datetime(2024, 3, 5, 5, 0, tzinfo=UTC)  # NY midnight (EST)
    assert (bar["open"], bar["close"], bar["volume"]) == (10.0, 12.0, 40)
    assert bar["vwap"] == pytest.approx((10.0 * 10 + 12.0 * 30) / 40)


def test_extended_minutes_keep_the_regular_alignment() -> None:
    table = minutes(
        [
            (at(9, 0), 1.0, 1.0, 1.0, 1.0, 1, 1, 1.0),  # 04:00 New York
            (at(14, 29), 2.0, 2.0, 2.0, 2.0, 1, 1, 2.0),  # 09:29
            (at(14, 30), 3.0, 3.0, 3.0, 3.0, 1, 1, 3.0),  # 09:30
        ]
    )
    stamps = [b["timestamp"] for b in aggregate(table, Timeframe.H1, nyse_calendar()).to_pylist()]
    assert stamps == [at(8, 30), at(13, 30), at(14, 30)]  # 03:30, 08:30, 09:30 New York
