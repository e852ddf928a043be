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


def _by_company(
    names: list[str],
    held: Held,
    current: Mapping[str, str],
    ended: Mapping[str, dt.date],
) -> tuple[list[str], Held, dict[str, tuple[str, ...]]]:
    """The partitions of a company's names under its current name; and the names each company
    had (older first). An old name's empty partitions from its rename day on (fetched before
    the rename was known) are no days of the company."""
    if len(held) and ended:
        last = np.array(
            [ended[n].toordinal() if n in ended else np.iinfo(np.int32).max for n in names],
            dtype=np.int64,
        )
        held = held.keep(~((held.day >= last[held.symbol]) & (held.bars == 0)))
    company = [current.get(n, n) for n in names]
    merged = sorted(set(company))
    code = {c: i for i, c in enumerate(merged)}
    remap = np.array([code[c] for c in company], dtype=np.int32)
    held = held.keep(np.ones(len(held), dtype=bool), remap[held.symbol]).unique(len(merged))
    aliases: dict[str, list[str]] = {}
    for name, c in zip(names, company, strict=True):
        if name != c:
            aliases.setdefault(c, []).append(name)
    return merged, held, {c: (*olds, c) for c, olds in aliases.items()}


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

    Sums per symbol over every partition at once (twenty years of a whole market are 50M);
    only the symbols with a hole, a partial or a thin day have their days looked at."""
    names, held = catalog.held(series)
    aliases: dict[str, tuple[str, ...]] = {}
    if current and any(n in current for n in names):
        names, held, aliases = _by_company(names, held, current, ended or {})
    wanted = set(symbols)
    if wanted:
        wanted |= {c for c, olds in aliases.items() if wanted & set(olds)}
    stale = stale or {}
    if not len(held):
        return SeriesStatus(series, ())
    n = len(names)
    sessions, regular_minutes = calendar.arrays.ordinals, calendar.arrays.regular_minutes
    # Each block's place among the sessions (-1: no session), through a table of its days.
    lo, hi = int(held.block_day.min()), int(held.block_day.max())
    place = np.full(hi - lo + 1, -1, dtype=np.int64)
    inside = (sessions >= lo) & (sessions <= hi)
    place[sessions[inside] - lo] = np.flatnonzero(inside)
    at = place[held.block_day - lo]
    symbol = held.symbol.astype(np.intp)  # once: each count below would convert it again
    day = held.day
    stored = np.bincount(symbol, minlength=n)
    off = held.per_entry(at < 0)  # days that are no session (rare): not counted as sessions
    sessions_held = stored - np.bincount(symbol[off], minlength=n)
    # Sums in float64 are exact below 2**53 bars: far beyond any series.
    bars = np.bincount(symbol, weights=held.bars, minlength=n)
    rejected: np.ndarray = np.zeros(n)
    if held.rejected.any():
        rejected = np.bincount(symbol, weights=held.rejected, minlength=n)
    first = np.full(n, np.iinfo(np.int32).max, dtype=np.int32)
    last = np.full(n, np.iinfo(np.int32).min, dtype=np.int32)
    np.minimum.at(first, symbol, day)
    np.maximum.at(last, symbol, day)
    start = np.searchsorted(sessions, first)
    between = np.searchsorted(sessions, last, side="right") - start
    # Thin: fewer bars than the share of the session's bars the provider makes likely, a
    # threshold per block (one day, one session).
    minutes = np.where(
        held.block_session == 1, _EXTENDED_MINUTES, regular_minutes[np.maximum(at, 0)]
    )
    expected = np.maximum(1, -(-minutes // series.timeframe.minutes))
    if series.timeframe is Timeframe.D1:
        expected = np.ones_like(expected)
    complete = held.complete == 1
    thin = complete & (held.bars < held.per_entry(_thin_fraction(series.provider) * expected))
    holes = sessions_held < between
    look = np.flatnonzero(holes[symbol] | ~complete | thin)
    look = look[np.lexsort((day[look], symbol[look]))]
    bounds = np.searchsorted(symbol[look], np.arange(n + 1))
    out: list[SymbolStatus] = []
    for index, name in enumerate(names):
        if (wanted and name not in wanted) or not stored[index]:
            continue
        rows = look[bounds[index] : bounds[index + 1]]
        days = day[rows]
        missing: tuple[tuple[dt.date, dt.date], ...] = ()
        if holes[index]:
            span = np.arange(start[index], start[index] + between[index])
            missing = _ranges(sessions, span[~np.isin(sessions[span], days)])
        out.append(
            SymbolStatus(
                symbol=name,
                first_day=dt.date.fromordinal(int(first[index])),
                last_day=dt.date.fromordinal(int(last[index])),
                sessions=int(sessions_held[index]),
                bars=int(bars[index]),
                missing=missing,
                partial=_days(days[~complete[rows]]),
                thin=_days(days[thin[rows]]),
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
