"""A deterministic little market, written as Massive writes its flat files.

Each session day every listed ticker gets minute bars (a dense one in both extended sessions, a
thin one in a few regular minutes) and a day bar that aggregates them. The universe has the
cases a whole-market dataset must get right: a company renamed mid-range (its rows change ticker
on the day), one delisted (no row after its last day), one listed later, a ticker with a dot.
Everything is a function of the day and the ticker, so two runs write identical bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Session

AGG_HEADER = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
_NS = 1_000_000_000
_MINUTE = 60 * _NS


@attrs.frozen
class Listing:
    """A company as the market saw it: its tickers over time and its listed days."""

    ticker: str
    first: dt.date | None = None  # listed from (None: before the files start)
    last: dt.date | None = None  # delisted after this day (None: still listed)
    renamed_to: str | None = None
    renamed_on: dt.date | None = None  # first day under the new ticker
    dense: bool = True  # trades every minute, both extended sessions included
    price: float = 100.0
    split_on: dt.date | None = None  # a split's execution day: prices divided from then on
    split_from: int = 1
    split_to: int = 1
    dividend_on: dt.date | None = None  # a cash dividend's ex-date
    dividend: float = 0.0

    def price_on(self, day: dt.date) -> float:
        """The raw price level of ``day`` (unadjusted, as the flat files are)."""
        if self.split_on and day >= self.split_on:
            return self.price * self.split_from / self.split_to
        return self.price

    def name_on(self, day: dt.date) -> str | None:
        """The ticker it trades under on ``day``; ``None`` when it is not listed then."""
        if (self.first and day < self.first) or (self.last and day > self.last):
            return None
        if self.renamed_to and self.renamed_on and day >= self.renamed_on:
            return self.renamed_to
        return self.ticker


#: The universe of the tests and the docs (days in March 2024).
UNIVERSE: tuple[Listing, ...] = (
    Listing("AAPL", price=170.0, dividend_on=dt.date(2024, 3, 5), dividend=0.24),
    Listing("BRK.B", price=400.0, dense=False),
    Listing("GONE", last=dt.date(2024, 3, 6), price=12.0),
    Listing("IPO", first=dt.date(2024, 3, 7), price=30.0, dense=False),
    Listing(
        "MSFT",
        price=410.0,
        split_on=dt.date(2024, 3, 7),
        split_from=1,
        split_to=2,
        dividend_on=dt.date(2024, 3, 6),
        dividend=0.75,
    ),
    Listing("OLDCO", renamed_to="NEWCO", renamed_on=dt.date(2024, 3, 8), price=50.0),
    Listing("ZVZZT", price=10.0, dense=False),
)


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def minute_bars(day: dt.date, universe: Sequence[Listing] = UNIVERSE) -> pa.Table:
    """Every listed ticker's minute bars of ``day``, sorted by ticker and minute (the files'
    order), in the files' columns."""
    calendar = nyse_calendar()
    regular = calendar.window(day, Session.REGULAR)
    extended = calendar.window(day, Session.EXTENDED)
    listed = sorted((name, item) for item in universe if (name := item.name_on(day)) is not None)
    parts = []
    for name, item in listed:
        rng = np.random.default_rng(_seed(item.ticker, day))
        if item.dense:
            starts = np.arange(extended.start_ns, extended.end_ns, _MINUTE, dtype=np.int64)
        else:
            every = np.arange(regular.start_ns, regular.end_ns, _MINUTE, dtype=np.int64)
            starts = np.sort(rng.choice(every, size=min(25, len(every)), replace=False))
        n = len(starts)
        level = item.price_on(day)
        close = np.round(level * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 2)
        open_ = np.round(np.concatenate([[level], close[:-1]]), 2)
        spread = np.round(np.abs(rng.normal(0, 0.02, n)), 2)
        high = np.maximum(open_, close) + spread
        low = np.maximum(np.minimum(open_, close) - spread, 0.01)
        volume = rng.integers(100, 20_000, n)
        parts.append(
            pa.table(
                {
                    "ticker": pa.array([name] * n, pa.string()),
                    "volume": pa.array(volume, pa.int64()),
                    "open": open_,
                    "close": close,
                    "high": np.round(high, 2),
                    "low": np.round(low, 2),
                    "window_start": pa.array(starts, pa.int64()),
                    "transactions": pa.array(np.maximum(volume // 150, 1), pa.int64()),
                }
            )
        )
    if not parts:
        return pa.table({c: pa.array([], pa.int64()) for c in AGG_HEADER})
    return pa.concat_tables(parts)


def day_bars(minutes: pa.Table, day: dt.date) -> pa.Table:
    """The day bars of a minute table: one per ticker, stamped at New York midnight."""
    from marketpipe.model.calendar import ny_midnight_ns

    grouped = minutes.group_by("ticker", use_threads=False).aggregate(
        [
            ("volume", "sum"),
            ("open", "first"),
            ("close", "last"),
            ("high", "max"),
            ("low", "min"),
            ("transactions", "sum"),
        ]
    )
    n = grouped.num_rows
    table = pa.table(
        {
            "ticker": grouped["ticker"],
            "volume": grouped["volume_sum"],
            "open": grouped["open_first"],
            "close": grouped["close_last"],
            "high": grouped["high_max"],
            "low": grouped["low_min"],
            "window_start": pa.array([ny_midnight_ns(day)] * n, pa.int64()),
            "transactions": grouped["transactions_sum"],
        }
    )
    return table.sort_by("ticker")


def csv_gz(table: pa.Table, *, level: int = 1, quoted: bool = False) -> bytes:
    """``table`` as a gzipped CSV with a header line, unquoted as the aggregate files are
    (``quoted``: a field quoted where it needs it, as the tick files quote ``"12,37"``)."""
    import gzip

    text = io.BytesIO()
    text.write((",".join(table.column_names) + "\n").encode())
    style = "needed" if quoted else "none"
    pacsv.write_csv(table, text, pacsv.WriteOptions(include_header=False, quoting_style=style))
    return gzip.compress(text.getvalue(), compresslevel=level, mtime=0)


def drifted(minutes: pa.Table) -> pa.Table:
    """A minute table as 2026 files write it: every tenth volume with half a share more (a
    decimal volume) and a column MarketPipe does not know (``otc``)."""
    import pyarrow.compute as pc

    tenth = pa.array(np.arange(minutes.num_rows) % 10 == 0)
    volume = pc.cast(minutes["volume"], pa.float64())
    volume = pc.if_else(tenth, pc.add(volume, 0.5), volume)
    table = minutes.set_column(1, "volume", volume)
    return table.append_column("otc", pa.array([""] * minutes.num_rows, pa.string()))


#: Every this many trades one is canceled (correction 1), one corrected (12); every this many
#: quotes one is crossed.
CANCELED_EVERY, CORRECTED_EVERY, CROSSED_EVERY = 97, 89, 101
SIP_DELAY = 150_000  # ns from the venue's print to the tape's


def trades_of(minutes: pa.Table, fractional: bool = False) -> pa.Table:
    """A minute table's trades, in the trades files' columns and order (ticker, then time):
    four a minute (open, high, low, close) at 0, 15, 30 and 45.000000789 s, sizes sharing the
    volume; every :data:`CANCELED_EVERY`-th canceled, :data:`CORRECTED_EVERY`-th corrected;
    every fifth with two conditions, the rest none. ``fractional``: every tenth size half a
    share more, as 2026 files carry them."""
    n = minutes.num_rows * 4
    at = np.repeat(minutes["window_start"].to_numpy(), 4) + np.tile(
        np.array([0, 15, 30, 45], dtype=np.int64) * 1_000_000_000 + np.array([0, 0, 0, 789]),
        minutes.num_rows,
    )
    four = np.stack([minutes[c].to_numpy() for c in ("open", "high", "low", "close")], axis=1)
    volume = np.repeat(np.asarray(minutes["volume"].to_numpy(), dtype=np.float64), 4)
    share = np.floor(volume / 4)
    size = share + np.tile([0, 0, 0, 1], minutes.num_rows) * (volume - 4 * share)
    size = np.maximum(size, 1.0)
    if fractional:
        size = size + np.where(np.arange(n) % 10 == 0, 0.5, 0.0)
    number = np.arange(1, n + 1)
    correction = np.where(
        number % CANCELED_EVERY == 0, "1", np.where(number % CORRECTED_EVERY == 0, "12", "0")
    )
    conditions = np.where(number % 5 == 0, "12,37", "")
    return pa.table(
        {
            "ticker": pa.array(np.repeat(minutes["ticker"].to_numpy(zero_copy_only=False), 4)),
            "conditions": pa.array(conditions),
            "correction": pa.array(correction),
            "exchange": pa.array(np.full(n, "4")),
            "id": pa.array(number.astype(str)),
            "participant_timestamp": pa.array(at, pa.int64()),
            "price": pa.array(four.reshape(-1), pa.float64()),
            "sequence_number": pa.array(number, pa.int64()),
            "sip_timestamp": pa.array(at + SIP_DELAY, pa.int64()),
            "size": pa.array(size, pa.float64()),
            "tape": pa.array(np.full(n, "3")),
            "trf_id": pa.array(np.full(n, "")),
            "trf_timestamp": pa.array(np.full(n, "")),
        }
    )


def quotes_of(trades: pa.Table) -> pa.Table:
    """A quote a nanosecond before each trade, a cent either side of its price, 1 round lot
    bid and 2 offered (Massive's quote sizes count round lots); every
    :data:`CROSSED_EVERY`-th crossed."""
    n = trades.num_rows
    price = trades["price"].to_numpy()
    crossed = np.arange(1, n + 1) % CROSSED_EVERY == 0
    bid = np.round(np.where(crossed, price + 0.01, price - 0.01), 2)
    ask = np.round(np.where(crossed, price - 0.01, price + 0.01), 2)
    stamp = trades["participant_timestamp"].to_numpy() - 1
    return pa.table(
        {
            "ticker": trades["ticker"],
            "ask_exchange": pa.array(np.full(n, "12")),
            "ask_price": ask,
            "ask_size": pa.array(np.full(n, 2), pa.int64()),
            "bid_exchange": pa.array(np.full(n, "11")),
            "bid_price": bid,
            "bid_size": pa.array(np.full(n, 1), pa.int64()),
            "conditions": pa.array(np.full(n, "1")),
            "indicators": pa.array(np.full(n, "")),
            "participant_timestamp": pa.array(stamp, pa.int64()),
            "sequence_number": trades["sequence_number"],
            "sip_timestamp": pa.array(stamp + SIP_DELAY, pa.int64()),
            "tape": trades["tape"],
            "trf_timestamp": pa.array(np.full(n, "")),
        }
    )


def publish_market(
    server: Any,
    days: Sequence[dt.date],
    universe: Sequence[Listing] = UNIVERSE,
    drift_from: dt.date | None = None,
    ticks: bool = False,
) -> dict[dt.date, pa.Table]:
    """Publish each day's minute and day files on ``server`` (``publish(key, body)``), and
    with ``ticks`` its trades and quotes files (:func:`trades_of`, :func:`quotes_of`); returns
    each day's minute table as written. From ``drift_from`` on, the minute files drift as
    2026's did (:func:`drifted`), and trade sizes are fractional."""
    from marketpipe_massive.flatfiles import day_key

    written = {}
    for day in days:
        minutes = minute_bars(day, universe)
        drifts = drift_from is not None and day >= drift_from
        if drifts:
            minutes = drifted(minutes)
        server.publish(day_key("minute_aggs_v1", day), csv_gz(minutes))
        server.publish(day_key("day_aggs_v1", day), csv_gz(day_bars(minutes, day)))
        if ticks:
            trades = trades_of(minute_bars(day, universe), fractional=drifts)
            server.publish(day_key("trades_v1", day), csv_gz(trades, quoted=True))
            server.publish(day_key("quotes_v1", day), csv_gz(quotes_of(trades), quoted=True))
        written[day] = minutes
    return written


def publish_reference(server: Any, universe: Sequence[Listing] = UNIVERSE) -> None:
    """The REST side of ``universe`` on ``server``: its splits, dividends, renames (ticker
    events) and tickers, listed and delisted."""
    for item in universe:
        if item.split_on:
            kind = "forward_split" if item.split_to > item.split_from else "reverse_split"
            server.splits.append(
                {
                    "id": f"S{_seed(item.ticker, 'split') % 10**8}",
                    "ticker": item.name_on(item.split_on) or item.ticker,
                    "execution_date": item.split_on.isoformat(),
                    "adjustment_type": kind,
                    "split_from": item.split_from,
                    "split_to": item.split_to,
                    "historical_adjustment_factor": item.split_from / item.split_to,
                }
            )
        if item.dividend_on:
            server.dividends.append(
                {
                    "id": f"D{_seed(item.ticker, 'dividend') % 10**8}",
                    "ticker": item.name_on(item.dividend_on) or item.ticker,
                    "cash_amount": item.dividend,
                    "currency": "USD",
                    "declaration_date": (item.dividend_on - dt.timedelta(days=14)).isoformat(),
                    "ex_dividend_date": item.dividend_on.isoformat(),
                    "record_date": item.dividend_on.isoformat(),
                    "pay_date": (item.dividend_on + dt.timedelta(days=14)).isoformat(),
                    "frequency": 4,
                    "distribution_type": "recurring",
                    "historical_adjustment_factor": 0.998,
                    "split_adjusted_cash_amount": item.dividend,
                }
            )
        names = [(dt.date(2000, 1, 3), item.ticker)]
        if item.renamed_to and item.renamed_on:
            names.append((item.renamed_on, item.renamed_to))
        events = {
            "name": f"{item.ticker} Inc.",
            "events": [
                {"type": "ticker_change", "date": day.isoformat(), "ticker_change": {"ticker": t}}
                for day, t in reversed(names)
            ],
        }
        for _, name in names:
            server.events[name] = events
        current = names[-1][1]
        server.tickers.append(
            {
                "ticker": current,
                "name": f"{item.ticker} Inc.",
                "market": "stocks",
                "locale": "us",
                "primary_exchange": "XNAS",
                "type": "CS",
                "active": item.last is None,
                "currency_name": "usd",
                "cik": f"{_seed(item.ticker, 'cik') % 10**7:010d}",
                "composite_figi": f"BBG{_seed(item.ticker, 'figi') % 10**9:09d}",
                "last_updated_utc": "2024-04-01T00:00:00Z",
                **(
                    {"delisted_utc": f"{item.last + dt.timedelta(days=1)}T00:00:00Z"}
                    if item.last
                    else {}
                ),
            }
        )
