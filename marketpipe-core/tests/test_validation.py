import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from core_helpers import MINUTE, simple_bars
from hypothesis import given, settings
from hypothesis import strategies as st
from marketpipe.ingestion import Session, Timeframe
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.schema import BAR_SCHEMA, encode_symbols
from marketpipe.plugins.validator import ValidationContext
from marketpipe.validate.ohlcv import OhlcvValidator

WINDOW = nyse_calendar().window(dt.date(2024, 1, 2), Session.REGULAR)


def context(**kw: object) -> ValidationContext:
    base = dict(symbols=frozenset({"AAPL"}), windows=(WINDOW,), timeframe=Timeframe.M1)
    base.update(kw)
    return ValidationContext(**base)  # type: ignore[arg-type]


def with_row(table: pa.Table, index: int, **values: object) -> pa.Table:
    data = table.to_pydict()
    for key, value in values.items():
        data[key][index] = value
    return pa.Table.from_pydict(data, schema=BAR_SCHEMA)


def good() -> pa.Table:
    return pa.Table.from_batches([simple_bars("AAPL", WINDOW)])


def test_valid_bars_pass_untouched() -> None:
    result = OhlcvValidator().validate(good(), context())
    assert result.valid.num_rows == 390 and result.rejected.num_rows == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"symbol": "MSFT"}, "symbol not requested"),
        ({"timestamp": WINDOW.end}, "outside the requested sessions"),
        ({"timestamp": WINDOW.start - dt.timedelta(minutes=1)}, "outside the requested sessions"),
        ({"timestamp": WINDOW.start + dt.timedelta(seconds=90)}, "not aligned"),
        ({"open": None}, "missing price"),
        ({"low": -1.0}, "finite and positive"),
        ({"close": float("nan")}, "finite and positive"),
        ({"high": float("inf")}, "finite and positive"),
        ({"high": 99.0}, "OHLC inconsistent"),
        ({"low": 101.0}, "OHLC inconsistent"),
        ({"volume": -3}, "volume"),
        ({"trade_count": -1}, "trade_count"),
        ({"vwap": 0.0}, "vwap"),
    ],
)
@pytest.mark.parametrize("encoded", [False, True], ids=["strings", "dictionary"])
def test_each_broken_rule_rejects_the_row_with_its_reason(
    change: dict, reason: str, encoded: bool
) -> None:
    table = with_row(good(), 5, **change)
    # Units reach validation with the symbol dictionary-encoded (encode_symbols); other
    # callers pass strings.
    result = OhlcvValidator().validate(encode_symbols(table) if encoded else table, context())
    assert result.valid.num_rows == 389
    assert result.rejected.num_rows == 1
    assert reason in result.rejected["reason"][0].as_py()
    assert result.rejected["timestamp"][0] == table["timestamp"][5]


def test_duplicate_and_out_of_order_timestamps_are_rejected_per_symbol() -> None:
    first = good()
    dup = with_row(first, 10, timestamp=first["timestamp"][9].as_py())
    result = OhlcvValidator().validate(dup, context())
    assert result.rejected.num_rows == 1
    assert "duplicate or out-of-order" in result.rejected["reason"][0].as_py()
    # Interleaved symbols are fine: order is checked within each symbol.
    other = pa.Table.from_batches([simple_bars("MSFT", WINDOW)])
    mixed = pa.concat_tables([first, other]).take(
        np.argsort(np.tile(np.arange(390), 2), kind="stable")
    )
    both = context(symbols=frozenset({"AAPL", "MSFT"}))
    result = OhlcvValidator().validate(mixed, both)
    assert result.rejected.num_rows == 0
    # ... and a symbol's row earlier than its previous one is found among the other's rows.
    late = with_row(mixed, 20, timestamp=mixed["timestamp"][2].as_py())  # AAPL's 11th bar
    result = OhlcvValidator().validate(late, both)
    assert result.rejected["symbol"].to_pylist() == ["AAPL"]
    assert result.rejected["timestamp"][0] == mixed["timestamp"][2]


def test_a_row_breaking_several_rules_is_rejected_for_the_first() -> None:
    table = with_row(good(), 5, symbol="MSFT", low=-1.0, volume=-3)
    table = with_row(table, 6, high=99.0, volume=-3)
    result = OhlcvValidator().validate(table, context())
    assert result.rejected["reason"].to_pylist() == [
        "symbol not requested",
        "OHLC inconsistent (need low <= open, close <= high)",
    ]


def test_null_price_bars_pass_only_where_the_provider_documents_them() -> None:
    table = with_row(good(), 3, open=None, high=None, low=None, close=None)
    assert OhlcvValidator().validate(table, context()).rejected.num_rows == 1
    allowed = OhlcvValidator().validate(table, context(allow_null_prices=True))
    assert allowed.rejected.num_rows == 0
    partial = with_row(good(), 3, open=None, high=None)
    assert (
        OhlcvValidator().validate(partial, context(allow_null_prices=True)).rejected.num_rows == 1
    )
    for empty in ({"volume": 0}, {"trade_count": 0}):
        no_trades = with_row(table, 3, **empty)
        result = OhlcvValidator().validate(no_trades, context(allow_null_prices=True))
        assert result.rejected["reason"].to_pylist() == [
            "null prices without trades (a null-price bar needs volume and trades)"
        ]


def test_daily_and_hourly_bars_align_in_new_york_time() -> None:
    midnight = dt.datetime(2024, 1, 2, 5, tzinfo=dt.UTC)  # 00:00 EST
    daily = with_row(
        pa.Table.from_batches([simple_bars("AAPL", WINDOW)]).slice(0, 1), 0, timestamp=midnight
    )
    assert OhlcvValidator().validate(daily, context(timeframe=Timeframe.D1)).rejected.num_rows == 0
    nine = dt.datetime(2024, 1, 2, 14, tzinfo=dt.UTC)  # 09:00 EST bar overlaps the 09:30 open
    hourly = with_row(daily, 0, timestamp=nine)
    assert OhlcvValidator().validate(hourly, context(timeframe=Timeframe.H1)).rejected.num_rows == 0
    off = with_row(daily, 0, timestamp=midnight + dt.timedelta(hours=1))
    assert OhlcvValidator().validate(off, context(timeframe=Timeframe.D1)).rejected.num_rows == 1


@settings(max_examples=60, deadline=None)
@given(
    prices=st.lists(
        st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=64)] * 4),
        min_size=1,
        max_size=30,
    ),
    volumes=st.lists(st.integers(-5, 10**9), min_size=30, max_size=30),
)
def test_accepted_rows_always_satisfy_the_invariants(prices: list, volumes: list) -> None:
    n = len(prices)
    o, h, lo, c = (np.array(col) for col in zip(*prices, strict=True))
    ts = WINDOW.start_ns + np.arange(n, dtype=np.int64) * MINUTE
    table = pa.table(
        {
            "symbol": ["AAPL"] * n,
            "timestamp": pa.array(ts).cast(pa.timestamp("ns", tz="UTC")),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": volumes[:n],
            "trade_count": [1] * n,
            "vwap": [None] * n,
        }
    ).cast(BAR_SCHEMA)
    result = OhlcvValidator().validate(table, context())
    assert result.valid.num_rows + result.rejected.num_rows == n
    v = result.valid
    if v.num_rows:
        op, hp, lp, cp = (v[col].to_numpy() for col in ("open", "high", "low", "close"))
        assert np.all(np.isfinite(op) & (lp > 0))
        assert np.all((lp <= np.minimum(op, cp)) & (hp >= np.maximum(op, cp)))
        assert np.all(v["volume"].to_numpy() >= 0)
