"""``mp status``: what the dataset holds, per series and symbol, and where the holes are.

Everything comes from the catalog (synced with the files first) and the exchange calendar:
first and last day, sessions stored, bars, the sessions missing between the first and last day
(as ranges), the days stored partial, days with suspiciously few bars for their session (below
the provider's ``thin_day_fraction``), and the rows the validators quarantined. Vectorised per
series, so a catalog of half a million partitions is summarised in a second or two.
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
    cols: dict[str, np.ndarray],
    current: Mapping[str, str],
    ended: Mapping[str, dt.date],
) -> tuple[list[str], dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """The partitions of a company's names under its current name, ordered again; and the
    names each company had (older first). An old name's empty partitions from its rename day
    on (fetched before the rename was known) are no days of the company."""
    if len(cols["symbol"]) and ended:
        last = np.array(
            [ended[n].toordinal() if n in ended else np.iinfo(np.int64).max for n in names],
            dtype=np.int64,
        )
        keep = ~((cols["day"] >= last[cols["symbol"]]) & (cols["bars"] == 0))
        cols = {k: v[keep] for k, v in cols.items()}
    company = [current.get(n, n) for n in names]
    merged = sorted(set(company))
    code = {c: i for i, c in enumerate(merged)}
    remap = np.array([code[c] for c in company], dtype=np.int64)
    symbol = remap[cols["symbol"]] if len(cols["symbol"]) else cols["symbol"]
    order = np.lexsort((cols["day"], symbol))
    out = {k: v[order] for k, v in cols.items()}
    out["symbol"] = symbol[order]
    aliases: dict[str, list[str]] = {}
    for name, c in zip(names, company, strict=True):
        if name != c:
            aliases.setdefault(c, []).append(name)
    return merged, out, {c: (*olds, c) for c, olds in aliases.items()}


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
    ledger has overtaken, and why."""
    names, cols = catalog.partitions(series)
    aliases: dict[str, tuple[str, ...]] = {}
    if current and any(n in current for n in names):
        names, cols, aliases = _by_company(names, cols, current, ended or {})
    wanted = set(symbols)
    if wanted:
        wanted |= {c for c, olds in aliases.items() if wanted & set(olds)}
    stale = stale or {}
    sessions, regular_minutes = calendar.arrays.ordinals, calendar.arrays.regular_minutes
    threshold = _thin_fraction(series.provider)
    out: list[SymbolStatus] = []
    bounds = np.searchsorted(cols["symbol"], np.arange(len(names) + 1))
    for index, name in enumerate(names):
        if wanted and name not in wanted:
            continue
        lo, hi = int(bounds[index]), int(bounds[index + 1])
        if lo == hi:
            continue
        days = cols["day"][lo:hi]
        bars = cols["bars"][lo:hi]
        first, last = int(days[0]), int(days[-1])
        a, b = np.searchsorted(sessions, [first, last + 1])
        span = np.arange(a, b)
        held = np.isin(sessions[span], days)
        missing = span[~held]
        # Thin: fewer bars than the share of the session's bars the provider makes likely.
        pos = np.clip(np.searchsorted(sessions, days), 0, len(sessions) - 1)
        minutes = np.where(cols["session"][lo:hi] == 1, _EXTENDED_MINUTES, regular_minutes[pos])
        expected = np.maximum(1, -(-minutes // series.timeframe.minutes))
        if series.timeframe is Timeframe.D1:
            expected = np.ones_like(expected)
        complete = cols["complete"][lo:hi] == 1
        thin = days[complete & (bars < threshold * expected)]
        out.append(
            SymbolStatus(
                symbol=name,
                first_day=dt.date.fromordinal(first),
                last_day=dt.date.fromordinal(last),
                sessions=int(held.sum()),
                bars=int(bars.sum()),
                missing=_ranges(sessions, missing),
                partial=_days(days[~complete]),
                thin=_days(thin),
                quarantined=int(cols["rejected"][lo:hi].sum()),
                sessions_between=len(span),
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
