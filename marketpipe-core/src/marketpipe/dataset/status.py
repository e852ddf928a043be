"""``mp status``: what the dataset holds, per series and symbol, and where the holes are.

Everything comes from the catalog (synced with the files first) and the exchange calendar:
first and last day, sessions stored, bars, the sessions missing between the first and last day
(as ranges), the days stored partial, days with suspiciously few bars for their session (below
the provider's ``thin_day_fraction``), and the rows the validators quarantined. Vectorised per
series over the catalog's blocks, so twenty years of a whole market (50M partitions) are
summarised in seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import attrs
import numpy as np

from marketpipe.dataset.unstored import Unstored
from marketpipe.model.calendar import TradingCalendar
from marketpipe.model.errors import UserError
from marketpipe.model.values import Series, Timeframe
from marketpipe.plugins import registry
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.catalog_blocks import Held
from marketpipe.storage.catalog_rollups import Rollup, ThinOf, highest, lowest

_EXTENDED_MINUTES = 16 * 60


@attrs.frozen
class SymbolStatus:
    symbol: str
    first_day: dt.date
    last_day: dt.date
    sessions: int
    bars: int
    missing: tuple[tuple[dt.date, dt.date], ...]
    partial: tuple[dt.date, ...]
    thin: tuple[dt.date, ...]
    quarantined: int
    #: Sessions from the first day to the last, stored or not.
    sessions_between: int = 0
    #: The company's names in this series, older first, when it was renamed (else empty).
    names: tuple[str, ...] = ()
    #: Why the stored bars are older than the ledger (a provider-adjusted series whose
    #: provider has since applied a split, say); ``mp update`` restates them.
    stale: str | None = None

    @property
    def missing_sessions(self) -> int:
        return self.sessions_between - self.sessions


@attrs.frozen
class SeriesStatus:
    series: Series
    symbols: tuple[SymbolStatus, ...]
    #: Partitions jobs were asked for and never stored (``mp update`` fetches them).
    unstored: tuple[Unstored, ...] = ()

    @property
    def bars(self) -> int:
        return sum(s.bars for s in self.symbols)


def _ranges(ordinals: np.ndarray, positions: np.ndarray) -> tuple[tuple[dt.date, dt.date], ...]:
    """Runs of consecutive sessions (by their position in the calendar) as (first, last) days."""
    if not len(positions):
        return ()
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(positions) - 1]))
    return tuple(
        (
            dt.date.fromordinal(int(ordinals[positions[a]])),
            dt.date.fromordinal(int(ordinals[positions[b]])),
        )
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    )


def _days(ordinals: np.ndarray) -> tuple[dt.date, ...]:
    return tuple(dt.date.fromordinal(int(d)) for d in ordinals)


def _thin_fraction(provider: str) -> float:
    try:
        return registry.get(provider).thin_day_fraction
    except UserError:
        return 0.5  # a provider no longer installed: the default


def _bits_from(first: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Per entry, the map of its month's days on or after ``day`` (ordinals)."""
    shift = np.clip(day - first, 0, 32).astype(np.uint64)
    bits: np.ndarray = ((np.uint64(0xFFFFFFFF) << shift) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return bits


def _by_company(
    names: list[str],
    roll: Rollup,
    current: Mapping[str, str],
    ended: Mapping[str, dt.date],
) -> tuple[list[str], Rollup, dict[str, tuple[str, ...]]]:
    """The months of a company's names under its current name; and the names each company had
    (older first). An old name's empty partitions from its rename day on (fetched before the
    rename was known) are no days of the company."""
    if len(roll) and ended:
        last = np.array(
            [ended[n].toordinal() if n in ended else np.iinfo(np.int32).max for n in names],
            dtype=np.int64,
        )
        drop = roll.empty & _bits_from(roll.first, last[roll.symbol])
        for name in ("held", "empty", "partial", "thin"):
            setattr(roll, name, getattr(roll, name) & ~drop)
    company = [current.get(n, n) for n in names]
    merged = sorted(set(company))
    code = {c: i for i, c in enumerate(merged)}
    roll.symbol = np.array([code[c] for c in company], dtype=np.int32)[roll.symbol]
    # A company's names in one month: one entry, their days together.
    order = np.lexsort((roll.first, roll.symbol))
    roll = roll.take(order)
    key = roll.symbol.astype(np.int64) << 32 | roll.first
    group = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    if len(group) < len(roll):
        one = roll.take(group)
        for name in ("held", "empty", "partial", "thin"):
            setattr(one, name, np.bitwise_or.reduceat(getattr(roll, name), group))
        one.bars = np.add.reduceat(roll.bars, group)
        one.rejected = np.add.reduceat(roll.rejected, group)
        roll = one
    aliases: dict[str, list[str]] = {}
    for name, c in zip(names, company, strict=True):
        if name != c:
            aliases.setdefault(c, []).append(name)
    return merged, roll, {c: (*olds, c) for c, olds in aliases.items()}


def _day_list(first: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The day ordinals the maps hold, entry by entry."""
    unpacked = np.unpackbits(
        bits.astype("<u4").view(np.uint8).reshape(-1, 4), axis=1, bitorder="little"
    )
    entry, bit = np.nonzero(unpacked)
    return first[entry] + bit


def _thin_of(series: Series, calendar: TradingCalendar) -> tuple[ThinOf, str]:
    """Which partitions of a block are thin: complete with fewer bars than the share of the
    session's bars the provider makes likely; and the key of that rule."""
    fraction = _thin_fraction(series.provider)
    sessions, regular_minutes = calendar.arrays.ordinals, calendar.arrays.regular_minutes

    def thin_of(held: Held) -> np.ndarray:
        if not series.timeframe.is_bar:  # ticks: no count a day can be measured against
            return np.zeros(len(held.complete), dtype=bool)
        at = np.searchsorted(sessions, held.block_day)
        minutes = np.where(
            held.block_session == 1,
            _EXTENDED_MINUTES,
            regular_minutes[np.clip(at, 0, len(sessions) - 1)],
        )
        expected = np.maximum(1, -(-minutes // series.timeframe.minutes))
        if series.timeframe is Timeframe.D1:
            expected = np.ones_like(expected)
        thin: np.ndarray = (held.complete == 1) & (held.bars < held.per_entry(fraction * expected))
        return thin

    return thin_of, repr(fraction)


def series_status(
    catalog: Catalog,
    series: Series,
    calendar: TradingCalendar,
    symbols: Iterable[str] = (),
    current: Mapping[str, str] | None = None,
    stale: Mapping[str, str] | None = None,
    ended: Mapping[str, dt.date] | None = None,
) -> SeriesStatus:
    """``current`` maps a company's old names to its current one (one line a company), and
    ``ended`` to the day each old name ended; ``stale`` says which symbols' stored bars the
    ledger has overtaken, and why.

    Sums the catalog's month rollups per symbol (twenty years of a whole market are 240 months
    of 10,000 entries, where there are 50M partitions); only the symbols with a hole, a partial
    or a thin day have their days looked at."""
    thin_of, thin_key = _thin_of(series, calendar)
    names, roll = catalog.rollup(series, thin_of, thin_key)
    aliases: dict[str, tuple[str, ...]] = {}
    if current and any(n in current for n in names):
        names, roll, aliases = _by_company(names, roll, current, ended or {})
    wanted = set(symbols)
    if wanted:
        wanted |= {c for c, olds in aliases.items() if wanted & set(olds)}
    stale = stale or {}
    roll = roll.take(np.flatnonzero(roll.held))
    if not len(roll):
        return SeriesStatus(series, ())
    n = len(names)
    sessions = calendar.arrays.ordinals
    # Each month's sessions as a map of its days.
    months, month_of = np.unique(roll.first, return_inverse=True)
    month_sessions = np.zeros(len(months), dtype=np.uint32)
    for i, first_day in enumerate(months.tolist()):
        lo, hi = np.searchsorted(sessions, [first_day, first_day + 32])
        for day in sessions[lo:hi].tolist():
            if dt.date.fromordinal(day).month == dt.date.fromordinal(first_day).month:
                month_sessions[i] |= np.uint32(1 << (day - first_day))
    symbol = roll.symbol.astype(np.intp)
    held_sessions = np.bitwise_count(roll.held & month_sessions[month_of.reshape(-1)])
    sessions_held = np.bincount(symbol, weights=held_sessions, minlength=n).astype(np.int64)
    stored = np.bincount(symbol, minlength=n)
    # Sums in float64 are exact below 2**53 bars: far beyond any series.
    bars = np.bincount(symbol, weights=roll.bars, minlength=n)
    rejected = np.bincount(symbol, weights=roll.rejected, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, symbol, roll.first + lowest(roll.held))
    np.maximum.at(last, symbol, roll.first + highest(roll.held))
    start = np.searchsorted(sessions, first)
    between = np.searchsorted(sessions, last, side="right") - start
    holes = sessions_held < between
    # The days of the few entries that have something to say, by symbol then day.
    look = np.flatnonzero(holes[symbol] | (roll.partial != 0) | (roll.thin != 0))
    look = look[np.lexsort((roll.first[look], symbol[look]))]
    detail = roll.take(look)
    bounds = np.searchsorted(detail.symbol, np.arange(n + 1))
    out: list[SymbolStatus] = []
    for index, name in enumerate(names):
        if (wanted and name not in wanted) or not stored[index]:
            continue
        missing: tuple[tuple[dt.date, dt.date], ...] = ()
        partial: tuple[dt.date, ...] = ()
        thin: tuple[dt.date, ...] = ()
        a, b = int(bounds[index]), int(bounds[index + 1])
        if a < b:
            mine = detail.take(np.arange(a, b))
            if holes[index]:
                days = _day_list(mine.first, mine.held)
                span = np.arange(start[index], start[index] + between[index])
                missing = _ranges(sessions, span[~np.isin(sessions[span], days)])
            partial = _days(np.sort(_day_list(mine.first, mine.partial)))
            thin = _days(np.sort(_day_list(mine.first, mine.thin)))
        out.append(
            SymbolStatus(
                symbol=name,
                first_day=dt.date.fromordinal(int(first[index])),
                last_day=dt.date.fromordinal(int(last[index])),
                sessions=int(sessions_held[index]),
                bars=int(bars[index]),
                missing=missing,
                partial=partial,
                thin=thin,
                quarantined=int(rejected[index]),
                sessions_between=int(between[index]),
                names=aliases.get(name, ()),
                stale="; ".join(stale[n] for n in aliases.get(name, (name,)) if n in stale) or None,
            )
        )
    return SeriesStatus(series, tuple(out))


def status_dict(statuses: Iterable[SeriesStatus]) -> dict[str, object]:
    return {
        "series": [
            {
                "provider": s.series.provider,
                "feed": s.series.feed,
                "adjustment": s.series.adjustment,
                "timeframe": s.series.timeframe.value,
                "bars": s.bars,
                "unstored": [u.as_dict() for u in s.unstored],
                "symbols": [
                    {
                        "symbol": y.symbol,
                        "first_day": y.first_day.isoformat(),
                        "last_day": y.last_day.isoformat(),
                        "sessions": y.sessions,
                        "bars": y.bars,
                        "missing": [[a.isoformat(), b.isoformat()] for a, b in y.missing],
                        "missing_sessions": y.missing_sessions,
                        "partial": [d.isoformat() for d in y.partial],
                        "thin": [d.isoformat() for d in y.thin],
                        "quarantined": y.quarantined,
                        "names": list(y.names) or [y.symbol],
                        "stale": y.stale,
                    }
                    for y in s.symbols
                ],
            }
            for s in statuses
        ]
    }
