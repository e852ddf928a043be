import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketpipe.ingestion import IngestionJobId, Session, Symbol, Timeframe, TimeRange
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import Kind, Series, symbols_of


@pytest.mark.parametrize(
    "text", ["AAPL", "brk.b", "BF-B", "MDGN+", "^GSPC", "A=B", "X#1", "A" * 12]
)
def test_real_tickers_are_accepted_and_upper_cased(text: str) -> None:
    assert Symbol(text).value == text.upper()


@pytest.mark.parametrize(
    "text", ["", "../x", "A/B", "A\\B", "A\x00", "A\nB", "A B", "..", ".", "A" * 13, "AAPL$", "é"]
)
def test_unsafe_or_malformed_symbols_are_rejected_naming_the_rule(text: str) -> None:
    with pytest.raises(InvalidInputError, match=r"letters, digits and \. - \+ = \^ #"):
        Symbol(text)


@given(st.text(min_size=1, max_size=14))
def test_any_accepted_symbol_is_a_safe_path_component(text: str) -> None:
    try:
        symbol = Symbol(text)
    except InvalidInputError:
        return
    assert "/" not in symbol.value and "\\" not in symbol.value and "\x00" not in symbol.value
    assert symbol.value not in (".", "..")
    assert symbol.value.isprintable() and 1 <= len(symbol.value) <= 12


def test_symbol_list_parsing_dedupes_and_keeps_order() -> None:
    assert [s.value for s in Symbol.parse_list("msft, AAPL,MSFT,,")] == ["MSFT", "AAPL"]
    with pytest.raises(InvalidInputError, match="no symbols"):
        Symbol.parse_list(" , ")


def test_time_range_is_inclusive_and_rejects_reversed_or_bad_dates() -> None:
    rng = TimeRange("2024-01-30", "2024-02-02")
    assert list(rng.days())[-1] == dt.date(2024, 2, 2)
    assert len(list(rng.days())) == 4
    assert TimeRange.single_day("2024-03-01") == TimeRange("2024-03-01", "2024-03-01")
    with pytest.raises(InvalidInputError, match="before start"):
        TimeRange("2024-02-02", "2024-01-30")
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        TimeRange("2024-13-01", "2024-12-01")


def test_timeframes_and_sessions_parse_or_explain() -> None:
    assert [t.value for t in Timeframe.bars()] == ["1m", "5m", "15m", "30m", "1h", "1d"]
    assert Timeframe.parse("1H") is Timeframe.H1
    assert Timeframe.D1.nanos == 86_400 * 10**9
    with pytest.raises(InvalidInputError, match="1m, 5m"):
        Timeframe.parse("2m")
    assert Session.parse("Extended") is Session.EXTENDED
    with pytest.raises(InvalidInputError, match="regular or extended"):
        Session.parse("night")


def test_a_tick_kind_is_the_last_key_of_its_series_and_has_no_bar_length() -> None:
    assert Timeframe.of("trades") is Timeframe.TRADES and Timeframe.of("bars") is Timeframe.M1
    assert Timeframe.of("bars", "5m") is Timeframe.M5
    assert Timeframe.TRADES.kind is Kind.TRADES and Timeframe.H1.kind is Kind.BARS
    assert not Timeframe.QUOTES.is_bar
    with pytest.raises(ValueError, match="no bar length"):
        _ = Timeframe.TRADES.minutes
    with pytest.raises(InvalidInputError, match="--kind trades"):
        Timeframe.parse("trades", bars_only=True)
    with pytest.raises(InvalidInputError, match="use one of bars, trades, quotes"):
        Timeframe.of("ticks")
    trades = Series("iex", "tops", "raw", Timeframe.TRADES)
    assert trades.kind is Kind.TRADES and str(trades) == "iex/tops/raw/trades"
    bars = Series("iex", "tops", "raw", Timeframe.M1)
    assert sorted([bars, trades]) == [trades, bars]  # ticks sort before the bars above them


def test_job_ids_are_generated_and_validated() -> None:
    job_id = IngestionJobId.generate()
    assert IngestionJobId(job_id.value) == job_id
    with pytest.raises(InvalidInputError):
        IngestionJobId("../../etc")


def test_composite_job_ids_carry_their_symbol_and_day() -> None:
    import datetime as dt

    job_id = IngestionJobId("AAPL_2024-01-01")
    assert job_id.value == "AAPL_2024-01-01" and str(job_id) == "AAPL_2024-01-01"
    assert job_id.symbol == Symbol("AAPL") and job_id.day == dt.date(2024, 1, 1)
    assert IngestionJobId("brk.b_2024-02-29").symbol == Symbol("BRK.B")
    assert IngestionJobId.for_symbol_day("msft", "2024-03-04").value == "MSFT_2024-03-04"
    generated = IngestionJobId("ABCDEF012345")
    assert generated.value == "abcdef012345" and generated.symbol is None and generated.day is None
    for bad in ("AAPL_2024-02-30", "AAPL_", "_2024-01-01", "A/B_2024-01-01", "AAPL 2024-01-01"):
        with pytest.raises(InvalidInputError, match="SYMBOL_YYYY-MM-DD"):
            IngestionJobId(bad)


def test_symbols_of_takes_a_list_text_one_symbol_or_names_unique_in_order() -> None:
    aapl = Symbol("AAPL")
    assert symbols_of("aapl,MSFT,AAPL") == (aapl, Symbol("MSFT"))
    assert symbols_of(aapl) == (aapl,) and symbols_of(aapl)[0] is aapl  # kept, not made again
    assert symbols_of(["MSFT", aapl, "msft"]) == (Symbol("MSFT"), aapl)
    with pytest.raises(InvalidInputError):
        symbols_of(["AAPL", "../etc"])
