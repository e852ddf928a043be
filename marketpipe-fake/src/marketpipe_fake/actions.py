"""The Fake market's corporate actions, deterministic from the seed and the symbol.

- Cash dividends: half the symbols pay one a quarter, about 0.4% of their price.
- Splits (2015 to 2027, the years the trading calendar knows): in a given year a symbol has a 12% chance of a forward split (2, 3 or
  4 for 1); a cheap symbol (under 20 at its base price) has a 3% chance of a 1-for-10 reverse
  split instead.
- A rename: ``OLDCO`` becomes ``NEWCO`` on a day of June 2024 chosen by the seed; it is one
  company, whose bars are stored under ``OLDCO`` before and ``NEWCO`` from that day.

Every action is announced (its process date) ten calendar days before its ex-date, so a
provider asked on a day knows the actions processed by then. Raw bars obey the splits (prices
divide by the ratio on the ex-date, volume multiplies: the walk is the price after the market's
last split); dividends are too small beside the random walk to be drawn into the prices.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Iterable

import attrs
from marketpipe.model.calendar import nyse_calendar

RENAMED = ("OLDCO", "NEWCO")
ANNOUNCED_DAYS = 10


def _unit(*parts: str) -> float:
    """A number in [0, 1) drawn from ``parts``."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def base_price(symbol: str) -> float:
    digest = hashlib.blake2b(symbol.encode(), digest_size=4).digest()
    return 10.0 + (int.from_bytes(digest, "little") % 49_000) / 100.0


def company(symbol: str) -> str:
    """The name whose random walk a symbol's bars follow (a renamed company keeps its walk)."""
    return RENAMED[0] if symbol == RENAMED[1] else symbol


def _weekday(day: dt.date) -> dt.date:
    """The first NYSE session on or after ``day`` (an ex-date is a trading day)."""
    calendar = nyse_calendar()
    for _ in range(10):  # never more than a long weekend and a holiday apart
        if calendar.is_session(day):
            return day
        day += dt.timedelta(days=1)
    raise ValueError(f"no session within ten days of {day}: past the trading calendar")


@attrs.frozen
class FakeAction:
    ident: str
    kind: str
    symbol: str
    ex_date: dt.date
    old_rate: float | None = None
    new_rate: float | None = None
    rate: float | None = None
    new_symbol: str | None = None

    @property
    def process_date(self) -> dt.date:
        return self.ex_date - dt.timedelta(days=ANNOUNCED_DAYS)

    def record(self) -> dict[str, object]:
        return {
            "id": self.ident,
            "kind": self.kind,
            "symbol": self.symbol,
            "new_symbol": self.new_symbol,
            "ex_date": self.ex_date,
            "process_date": self.process_date,
            "old_rate": self.old_rate,
            "new_rate": self.new_rate,
            "rate": self.rate,
            "record": json.dumps(
                {k: str(v) for k, v in attrs.asdict(self).items() if v is not None}, sort_keys=True
            ),
        }


def rename_day(seed: str) -> dt.date:
    return _weekday(dt.date(2024, 6, 3) + dt.timedelta(days=int(_unit(seed, "rename") * 25)))


def actions(seed: str, symbol: str, years: Iterable[int]) -> list[FakeAction]:
    """The actions of ``symbol`` with an ex-date in ``years``, by ex-date."""
    found: list[FakeAction] = []
    name = company(symbol)
    for year in years:
        if _unit(seed, name, "pays") < 0.5:
            for quarter, month in enumerate((2, 5, 8, 11)):
                ex = _weekday(dt.date(year, month, 10 + int(_unit(seed, name, "day") * 10)))
                rate = round(base_price(name) * 0.004, 2)
                found.append(
                    FakeAction(
                        f"{seed}-{name}-div-{year}-{quarter}", "cash_dividend", name, ex, rate=rate
                    )
                )
        draw = _unit(seed, name, "split", str(year))
        ex = _weekday(
            dt.date(year, 1, 1) + dt.timedelta(days=int(_unit(seed, name, str(year)) * 360))
        )
        if draw < 0.12:
            ratio = float(2 + int(_unit(seed, name, "ratio", str(year)) * 3))
            found.append(
                FakeAction(
                    f"{seed}-{name}-split-{year}",
                    "forward_split",
                    name,
                    ex,
                    old_rate=1.0,
                    new_rate=ratio,
                )
            )
        elif draw < 0.15 and base_price(name) < 20:
            found.append(
                FakeAction(
                    f"{seed}-{name}-reverse-{year}",
                    "reverse_split",
                    name,
                    ex,
                    old_rate=10.0,
                    new_rate=1.0,
                )
            )
    if name == RENAMED[0]:
        day = rename_day(seed)
        if day.year in set(years):
            found.append(
                FakeAction(f"{seed}-rename", "name_change", RENAMED[0], day, new_symbol=RENAMED[1])
            )
    if name == RENAMED[0]:  # the company's actions carry the name it had on their ex-date
        renamed = rename_day(seed)
        found = [
            attrs.evolve(a, symbol=RENAMED[1])
            if a.kind != "name_change" and a.ex_date >= renamed
            else a
            for a in found
        ]
    return sorted(found, key=lambda a: (a.ex_date, a.ident))


#: The years the Fake market has splits in (a day's raw prices depend on the splits after it).
SPLIT_YEARS = range(2015, 2028)


def split_scale(seed: str, symbol: str, days: list[dt.date]) -> list[float]:
    """Each day's raw price scale: the product of ``new/old`` of every split whose ex-date is
    after the day (before a 2-for-1 split a share costs twice what it costs after), so the
    prices of the market's last year are the walk's own."""
    splits = _splits(seed, symbol)
    out = []
    for day in days:
        scale = 1.0
        for ex, ratio in splits:
            if ex > day:
                scale *= ratio
        out.append(scale)
    return out


@functools.lru_cache(maxsize=4096)
def _splits(seed: str, symbol: str) -> tuple[tuple[dt.date, float], ...]:
    """``(ex-date, new/old)`` of every split of ``symbol``'s company, worked out once."""
    found = []
    for a in actions(seed, symbol, SPLIT_YEARS):
        if a.kind in ("forward_split", "reverse_split"):
            assert a.old_rate is not None and a.new_rate is not None
            found.append((a.ex_date, a.new_rate / a.old_rate))
    return tuple(found)
