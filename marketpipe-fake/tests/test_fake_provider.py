import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from marketpipe.ingestion import FetchRequest, Session, Symbol, Timeframe, TimeRange
from marketpipe.ingestion.infrastructure import get
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe.plugins.validator import ValidationContext
from marketpipe.testing import check_provider
from marketpipe.validate.ohlcv import OhlcvValidator
from marketpipe_fake import FakeProvider

CAL = nyse_calendar()


def fetch(
    symbols: str,
    start: str,
    end: str,
    timeframe: str = "1m",
    session: str = "regular",
    provider: FakeProvider | None = None,
) -> pa.Table:
    request = FetchRequest(
        symbols=Symbol.parse_list(symbols),
        windows=tuple(CAL.windows(TimeRange(start, end), Session(session))),
        timeframe=Timeframe(timeframe),
        session=Session(session),
    )
    return pa.Table.from_batches(list((provider or FakeProvider()).fetch(request)), BAR_SCHEMA)


def test_passes_the_conformance_kit_for_every_timeframe_and_session() -> None:
    report = check_provider(
        "fake",
        symbols=("AAPL", "BRK.B", "MDGN+", "MSFT", "OLDCO"),
        actions_start="2015-01-01",
        actions_end="2024-12-31",
    )
    assert report.actions is not None and report.actions > 20
    assert report.requests == 16  # (6 timeframes, trades, quotes) x 2 sessions
    assert get("fake").distribution == "marketpipe-fake"


@pytest.mark.parametrize(
    ("day", "session", "timeframe", "bars"),
    [
        ("2024-03-04", "regular", "1m", 390),
        ("2024-11-29", "regular", "1m", 210),  # early close at 13:00
        ("2024-03-04", "extended", "1m", 960),
        ("2024-03-04", "regular", "5m", 78),
        ("2024-03-04", "regular", "15m", 26),
        ("2024-03-04", "regular", "30m", 13),
        ("2024-03-04", "regular", "1h", 7),  # 09:00 (from 09:30) to 15:00
        ("2024-03-04", "regular", "1d", 1),
        ("2024-03-09", "regular", "1m", 0),  # Saturday: no session
    ],
)
def test_bar_counts_follow_the_calendar(day: str, session: str, timeframe: str, bars: int) -> None:
    assert fetch("AAPL", day, day, timeframe, session).num_rows == bars


def test_deterministic_per_symbol_day_and_timeframe_and_symbols_differ() -> None:
    week = fetch("AAPL,MSFT", "2024-03-04", "2024-03-08")
    one_day = fetch("AAPL", "2024-03-06", "2024-03-06")
    same_day_in_week = week.filter(pa.compute.equal(week["symbol"], "AAPL")).slice(780, 390)
    assert same_day_in_week.equals(one_day)
    aapl = week.filter(pa.compute.equal(week["symbol"], "AAPL"))["close"].to_numpy()
    msft = week.filter(pa.compute.equal(week["symbol"], "MSFT"))["close"].to_numpy()
    assert not np.allclose(aapl, msft)
    other_seed = fetch("AAPL", "2024-03-06", "2024-03-06", provider=FakeProvider(seed="7"))
    assert not other_seed.equals(one_day)


def test_regular_bars_are_the_same_whatever_the_session_asked() -> None:
    regular = fetch("AAPL", "2024-03-04", "2024-03-04")
    extended = fetch("AAPL", "2024-03-04", "2024-03-04", session="extended")
    assert extended.slice(330, 390).equals(regular)


def test_bars_are_realistic() -> None:
    table = fetch("AAPL,MSFT,SPY", "2024-01-02", "2024-03-28")
    o, h, lo, c, w = (table[k].to_numpy() for k in ("open", "high", "low", "close", "vwap"))
    assert np.all(lo <= np.minimum(o, c)) and np.all(h >= np.maximum(o, c)) and np.all(lo > 0)
    assert np.all((w >= lo) & (w <= h))
    assert np.allclose(c * 100, np.round(c * 100))  # prices in cents
    volume, trades = table["volume"].to_numpy(), table["trade_count"].to_numpy()
    assert np.all(volume > 0) and np.all((trades >= 1) & (trades <= volume))
    minute_moves = np.abs(np.diff(c[:390]) / c[:389])
    assert minute_moves.max() < 0.01  # no absurd jumps minute to minute


def test_daily_bar_aggregates_the_session() -> None:
    minutes = fetch("AAPL", "2024-03-04", "2024-03-04")
    daily = fetch("AAPL", "2024-03-04", "2024-03-04", "1d").to_pylist()[0]
    assert daily["open"] == minutes["open"][0].as_py()
    assert daily["close"] == minutes["close"][-1].as_py()
    assert daily["high"] == pa.compute.max(minutes["high"]).as_py()
    assert daily["volume"] == pa.compute.sum(minutes["volume"]).as_py()
    assert daily["timestamp"] == dt.datetime(2024, 3, 4, 5, tzinfo=dt.UTC)  # New York midnight


def test_bad_rows_are_off_by_default_and_injected_on_request() -> None:
    windows = tuple(CAL.windows(TimeRange("2024-03-04", "2024-03-05"), Session.REGULAR))
    context = ValidationContext(
        symbols=frozenset({"AAPL"}), windows=windows, timeframe=Timeframe.M1
    )
    clean = fetch("AAPL", "2024-03-04", "2024-03-05")
    assert OhlcvValidator().validate(clean, context).rejected.num_rows == 0
    dirty = fetch("AAPL", "2024-03-04", "2024-03-05", provider=FakeProvider(bad_row_rate="0.05"))
    rejected = OhlcvValidator().validate(dirty, context).rejected
    assert 10 < rejected.num_rows < 80
    assert len(set(rejected["reason"].to_pylist())) >= 3


def test_bad_settings_are_user_errors() -> None:
    for seed in ("abc", "1.5", "nan", "inf"):
        with pytest.raises(InvalidInputError, match="seed must be a whole number"):
            FakeProvider(seed=seed)
    for rate in ("nan", "-inf", "x"):
        with pytest.raises(InvalidInputError, match="bad_row_rate must be a number"):
            FakeProvider(bad_row_rate=rate)
    with pytest.raises(InvalidInputError, match="between 0 and 1"):
        FakeProvider(bad_row_rate="2")


def test_the_fake_market_reports_its_actions_and_its_raw_bars_obey_the_splits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MARKETPIPE_NOW", "2024-12-31T23:00:00Z")
    provider = FakeProvider()
    actions = provider.fetch_actions(["MSFT", "NEWCO"], dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    rows = [(a["symbol"], a["kind"], a["ex_date"], a["new_rate"], a["new_symbol"])
            for a in actions.to_pylist()]  # fmt: skip
    assert rows == [
        ("OLDCO", "name_change", dt.date(2024, 6, 20), None, "NEWCO"),
        ("MSFT", "forward_split", dt.date(2024, 9, 3), 2.0, None),
    ]
    # Announced ten days before the ex-date: asked earlier, the split is not known yet.
    monkeypatch.setenv("MARKETPIPE_NOW", "2024-08-20T23:00:00Z")
    later = provider.fetch_actions(["MSFT"], dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert later.num_rows == 0
    # The split's ratio shows in the raw bars: the walk's level, scaled by 2 before the ex-date.
    daily = FetchRequest(
        symbols=(Symbol("MSFT"),), windows=tuple(nyse_calendar().windows(
            TimeRange("2024-08-01", "2024-09-30"), Session.REGULAR)),
        timeframe=Timeframe.D1, session=Session.REGULAR,
    )  # fmt: skip
    table = pa.Table.from_batches(list(provider.fetch(daily)))
    days = [t.date() for t in table["timestamp"].to_pylist()]
    close = table["close"].to_pylist()
    before = [c for d, c in zip(days, close, strict=True) if d < dt.date(2024, 9, 3)]
    after = [c for d, c in zip(days, close, strict=True) if d >= dt.date(2024, 9, 3)]
    assert 1.6 < (sum(before) / len(before)) / (sum(after) / len(after)) < 2.4
    # A renamed company trades under one name at a time.
    both = FetchRequest(
        symbols=(Symbol("OLDCO"), Symbol("NEWCO")), windows=tuple(nyse_calendar().windows(
            TimeRange("2024-06-17", "2024-06-21"), Session.REGULAR)),
        timeframe=Timeframe.D1, session=Session.REGULAR,
    )  # fmt: skip
    named = pa.Table.from_batches(list(provider.fetch(both)))
    assert [(s, t.date().isoformat()) for s, t in zip(
        named["symbol"].to_pylist(), named["timestamp"].to_pylist(), strict=True)] == [
        ("OLDCO", "2024-06-17"), ("OLDCO", "2024-06-18"),
        ("NEWCO", "2024-06-20"), ("NEWCO", "2024-06-21"),
    ]  # fmt: skip
