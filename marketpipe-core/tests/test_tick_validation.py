"""Trades and quotes validated: each broken rule rejects its row with its reason; crossed
quotes are kept and counted."""

import datetime as dt

import pyarrow as pa
import pytest
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.ticks import QUOTE_SCHEMA, TRADE_SCHEMA
from marketpipe.model.values import Session, Timeframe
from marketpipe.plugins.validator import ValidationContext
from marketpipe.validate.ticks import CROSSED, QuoteValidator, TradeValidator

DAY = dt.date(2024, 3, 4)
WINDOW = nyse_calendar().window(DAY, Session.REGULAR)
CONTEXT = ValidationContext(
    symbols=frozenset({"AAPL", "MSFT"}), windows=(WINDOW,), timeframe=Timeframe.M1
)
T0 = WINDOW.start_ns


def trades(n: int = 5, **changed: object) -> pa.Table:
    """``n`` good AAPL trades a second apart; ``changed``: column -> (row, value)."""
    data: dict[str, list] = {
        "symbol": ["AAPL"] * n,
        "timestamp": [T0 + i * 10**9 for i in range(n)],
        "sip_timestamp": [None] * n,
        "price": [100.0 + i for i in range(n)],
        "size": [100.0] * n,
        "exchange": ["V"] * n,
        "id": [str(i) for i in range(n)],
        "conditions": [[]] * n,
        "tape": [None] * n,
        "correction": ["regular"] * n,
        "sequence": [None] * n,
    }
    for column, (row, value) in changed.items():
        data[column][row] = value
    data["timestamp"] = pa.array(data["timestamp"], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    return pa.table(data, schema=TRADE_SCHEMA)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"symbol": (2, "IBM")}, "symbol not requested"),
        ({"timestamp": (2, T0 + 86_400 * 10**9)}, "outside the requested days"),
        ({"price": (2, 0.0)}, "price not finite and positive"),
        ({"price": (2, float("nan"))}, "price not finite and positive"),
        ({"price": (2, -1.0)}, "price not finite and positive"),
        ({"size": (2, 0.0)}, "size not finite and positive"),
        ({"correction": (2, "busted")}, "unknown correction"),
        ({"timestamp": (2, T0 - 1)}, "before the symbol's previous trade"),
    ],
)
def test_each_broken_trade_rule_rejects_the_row_with_its_reason(change: dict, reason: str) -> None:
    result = TradeValidator().validate(trades(**change), CONTEXT)
    assert result.valid.num_rows == 4 and result.rejected.num_rows == 1
    assert reason in result.rejected["reason"][0].as_py()
    assert result.rejected["id"][0].as_py() == "2"


def test_good_trades_pass_and_extended_hours_of_the_day_are_inside_it() -> None:
    early = T0 - 5 * 3600 * 10**9  # 04:30 New York: outside the session, inside the day
    table = trades(timestamp=(0, early))
    result = TradeValidator().validate(table, CONTEXT)
    assert result.valid.num_rows == 5 and result.rejected.num_rows == 0


def quotes(rows: list[tuple]) -> pa.Table:
    """(symbol, ns, bid, bid size, ask, ask size) rows."""
    cols = list(zip(*rows, strict=True))
    n = len(rows)
    return pa.table(
        {
            "symbol": list(cols[0]),
            "timestamp": pa.array(list(cols[1]), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "bid_price": list(cols[2]),
            "bid_size": list(cols[3]),
            "ask_price": list(cols[4]),
            "ask_size": list(cols[5]),
            "bid_exchange": ["V"] * n,
            "ask_exchange": ["V"] * n,
            "conditions": [[]] * n,
            "tape": [None] * n,
            "sequence": [None] * n,
        },
        schema=QUOTE_SCHEMA,
    )


def test_quotes_each_rule_and_a_crossed_quote_kept_and_counted() -> None:
    table = quotes(
        [
            ("AAPL", T0, 10.0, 100.0, 10.1, 200.0),  # good
            ("AAPL", T0 + 1, 10.2, 100.0, 10.1, 200.0),  # crossed: kept, counted
            ("AAPL", T0 + 2, None, None, 10.1, 200.0),  # no bid: fine
            ("AAPL", T0 + 3, 0.0, 100.0, 10.1, 200.0),  # a zero bid price
            ("AAPL", T0 + 4, 10.0, 100.0, 10.1, -5.0),  # a negative ask size
            ("AAPL", T0 + 5, None, None, None, None),  # nothing quoted
            ("MSFT", T0 + 6, 10.0, 100.0, 10.1, 200.0),
            ("MSFT", T0 + 1, 10.0, 100.0, 10.1, 200.0),  # before MSFT's previous quote
        ]
    )
    result = QuoteValidator().validate(table, CONTEXT)
    assert result.valid.num_rows == 4
    assert result.rejected["reason"].to_pylist() == [
        "bid not a finite positive price with a positive size",
        "ask not a finite positive price with a positive size",
        "no bid and no ask",
        "timestamp before the symbol's previous quote",
    ]
    assert result.counted == {CROSSED: 1}


def test_a_trade_sent_twice_is_quarantined_and_ids_restarting_at_another_time_are_kept() -> None:
    table = trades(4)
    twice = pa.concat_tables([table.slice(0, 3), table.slice(2, 1), table.slice(3)])
    result = TradeValidator().validate(twice, CONTEXT)
    assert result.valid["id"].to_pylist() == ["0", "1", "2", "3"]
    (reason,) = result.rejected["reason"].to_pylist()
    assert "the same trade again" in reason and result.rejected["id"][0].as_py() == "2"
    # Two trades at one stamp with other ids, and an id printed again later: all trades.
    shared = trades(4, timestamp=(1, T0), id=(3, "0"))
    assert TradeValidator().validate(shared, CONTEXT).rejected.num_rows == 0
