"""The Fake market's instruments: a small universe with a listing, a delisting and a rename,
which its bars obey (no bar before a listing or after a delisting).

- ``AAPL``, ``MSFT``, ``NVDA``, ``SPY``: listed throughout.
- ``FADED``: delisted; its last session is 2024-06-14.
- ``DEBUT``: listed from 2024-09-03.
- ``OLDCO`` becomes ``NEWCO`` on the seed's rename day (:mod:`marketpipe_fake.actions`): one
  instrument, listed today as ``NEWCO``.

Any other symbol the Fake provider is asked for still gets bars (it simulates whatever it is
asked); the universe is what it *lists*.
"""

from __future__ import annotations

import datetime as dt
import json

import attrs

from marketpipe_fake.actions import RENAMED, rename_day


@attrs.frozen
class FakeListing:
    symbol: str  # its name now
    name: str
    type: str = "CS"
    first: dt.date | None = None
    last: dt.date | None = None


LISTINGS = (
    FakeListing("AAPL", "Apple Fake Inc."),
    FakeListing("DEBUT", "Debut Fake Corp.", first=dt.date(2024, 9, 3)),
    FakeListing("FADED", "Faded Fake Corp.", last=dt.date(2024, 6, 14)),
    FakeListing("MSFT", "Microsoft Fake Corp."),
    FakeListing(RENAMED[1], "Newco Fake Holdings"),
    FakeListing("NVDA", "Nvidia Fake Corp."),
    FakeListing("SPY", "Fake S&P 500 ETF", type="ETF"),
)
_BY_SYMBOL = {item.symbol: item for item in LISTINGS}


def listed_days(symbol: str) -> tuple[dt.date | None, dt.date | None]:
    """``(first, last)`` listed day of a symbol of the universe (``None``: unbounded)."""
    item = _BY_SYMBOL.get(symbol)
    return (item.first, item.last) if item else (None, None)


def names_on(seed: str, day: dt.date) -> list[str]:
    """The universe's symbols listed on ``day``, under their names of that day."""
    out = []
    for item in LISTINGS:
        if (item.first and day < item.first) or (item.last and day > item.last):
            continue
        if item.symbol == RENAMED[1] and day < rename_day(seed):
            out.append(RENAMED[0])
        else:
            out.append(item.symbol)
    return sorted(out)


def instrument_rows(seed: str, fetched: dt.datetime) -> list[dict[str, object]]:
    return [
        {
            "provider": "fake",
            "id": f"fake-{seed}-{RENAMED[0] if item.symbol == RENAMED[1] else item.symbol}",
            "symbol": item.symbol,
            "name": item.name,
            "type": item.type,
            "primary_exchange": "XFAK",
            "active": item.last is None,
            "first_day": item.first,
            "last_day": item.last,
            "fetched_at": fetched,
            "record": json.dumps(attrs.asdict(item), default=str, sort_keys=True),
        }
        for item in LISTINGS
    ]
