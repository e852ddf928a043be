"""One-minute bars from canonical trades: what counts, what sets prices, and the vwap."""

import datetime as dt

import pyarrow as pa
import pytest
from marketpipe.dataset.trade_bars import bars_from_trades
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.ticks import TRADE_SCHEMA, TradeRules
from marketpipe.model.values import Session

DAY = dt.date(2024, 3, 4)
REGULAR = nyse_calendar().window(DAY, Session.REGULAR)
MINUTE = 60_000_000_000
RULES = TradeRules(frozenset({"odd"}), frozenset({"ext"}))


def trades(rows: list[tuple]) -> pa.Table:
    """(symbol, ns, price, size, conditions, correction) rows."""
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    n = len(rows)
    return pa.table(
        {
            "symbol": list(cols[0]),
            "timestamp": pa.array(list(cols[1]), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "sip_timestamp": pa.nulls(n, pa.timestamp("ns", tz="UTC")),
            "price": list(cols[2]),
            "size": list(cols[3]),
            "exchange": ["V"] * n,
            "id": [str(i) for i in range(n)],
            "conditions": list(cols[4]),
            "tape": pa.nulls(n, pa.string()),
            "correction": list(cols[5]),
            "sequence": pa.nulls(n, pa.int64()),
        },
        schema=TRADE_SCHEMA,
    )


def test_what_counts_and_what_sets_the_prices() -> None:
    t = REGULAR.start_ns + 5 * MINUTE
    before = REGULAR.start_ns - 10 * MINUTE
    table = trades(
        [
            ("MSFT", t + 1, 10.0, 100.0, [], "regular"),
            ("AAPL", t + 2, 20.0, 5.0, ["odd"], "regular"),  # counts, sets nothing
            ("AAPL", t + 3, 21.0, 100.0, [], "regular"),
            ("AAPL", t + 4, 99.0, 100.0, [], "canceled"),  # nothing at all
            ("AAPL", t + 5, 22.0, 100.0, ["ext"], "regular"),  # inside: sets nothing
            ("AAPL", t + 6, 20.5, 100.0, [], "corrected"),  # as printed
            ("AAPL", before, 19.0, 0.5, ["ext"], "regular"),  # outside: sets; half a share
        ]
    )
    bars = bars_from_trades(table, RULES, [REGULAR]).to_pylist()
    assert [(b["symbol"], b["timestamp"].timestamp()) for b in bars] == [
        ("AAPL", before // 10**9 // 60 * 60),
        ("AAPL", t // 10**9 // 60 * 60),
        ("MSFT", t // 10**9 // 60 * 60),
    ]
    early, aapl, msft = bars
    assert (early["open"], early["close"], early["volume"]) == (19.0, 19.0, 0)  # 0.5: even
    assert (aapl["open"], aapl["high"], aapl["low"], aapl["close"]) == (21.0, 21.0, 20.5, 20.5)
    assert (aapl["volume"], aapl["trade_count"]) == (305, 4)
    assert aapl["vwap"] == pytest.approx((20 * 5 + 21 * 100 + 22 * 100 + 20.5 * 100) / 305)
    assert msft["vwap"] == 10.0


def test_a_minute_of_odd_lots_only_has_volume_and_no_prices() -> None:
    t = REGULAR.start_ns
    bars = bars_from_trades(trades([("A", t, 5.0, 3.0, ["odd"], "regular")]), RULES, [REGULAR])
    row = bars.to_pylist()[0]
    assert row["open"] is None and row["close"] is None and row["volume"] == 3


def test_off_grid_prices_keep_their_vwap_in_dollars_and_nothing_is_no_bars() -> None:
    t = REGULAR.start_ns
    table = trades(
        [("A", t, 1.000015, 1.0, [], "regular"), ("A", t + 1, 1.000025, 3.0, [], "regular")]
    )
    (row,) = bars_from_trades(table, RULES).to_pylist()
    assert row["vwap"] == pytest.approx((1.000015 + 3 * 1.000025) / 4, rel=1e-15)
    assert bars_from_trades(trades([]), RULES).num_rows == 0
