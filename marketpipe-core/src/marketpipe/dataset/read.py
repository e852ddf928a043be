"""One way to read a dataset: ``marketpipe.read(...)`` and ``mp read``.

Bars come from the stored **raw** series of the provider, adjusted at read time with the ledger
(:mod:`marketpipe.dataset.adjust`), whichever provider filled it; renames resolve through the
ledger, so a company's history reads as one series under the name asked for. Where only a
provider-adjusted series is stored, that series is returned for its own adjustment (and
``as_of`` is refused: such a series is as the provider adjusted it when it was fetched).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.dataset.adjust import (
    ADJUSTMENTS,
    LOOKBACK,
    apply,
    closes_before,
    factors,
    kinds_for,
    session_days,
)
from marketpipe.dataset.renames import earlier_names, renames
from marketpipe.model import clock
from marketpipe.model.actions import CASH_DIVIDEND
from marketpipe.model.calendar import day_bounds, in_sessions, nyse_calendar
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.schema import BAR_SCHEMA, symbol_codes
from marketpipe.model.values import RAW, Series, Session, Timeframe, TimeRange
from marketpipe.plugins.sink import Sink
from marketpipe.storage.ledger import Ledger
from marketpipe.storage.location import dataset_root, local_root
from marketpipe.storage.sinks import choose_sink
from marketpipe.storage.stores import open_store

_EPOCH = dt.date(1970, 1, 1)


@attrs.frozen
class ReadResult:
    table: pa.Table
    #: What the reader should know: actions not applied, recorded-only actions, renames.
    notes: tuple[str, ...] = ()


def _date(value: dt.date | str | None, what: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInputError(f"{what} must be a date (YYYY-MM-DD), got {value!r}") from None


def _series(sink: Sink, provider: str, feed: str | None, timeframe: Timeframe) -> list[Series]:
    """The stored series of the selection: as the catalog knows them, or, when it knows none
    (a dataset copied without its catalog), after syncing it with the files."""

    def matching(every: Iterable[Series]) -> list[Series]:
        return [
            s
            for s in every
            if s.provider == provider
            and s.timeframe is timeframe
            and (feed is None or s.feed == feed)
        ]

    every = sink.catalog.series()
    stored = matching(every)
    if not stored:
        every = sink.catalog.sync_all()
        stored = matching(every)
    if not stored:
        what = f"provider {provider}" + (f" feed {feed}" if feed else "")
        held = sorted(
            {s.timeframe for s in every if s.provider == provider}, key=lambda t: t.minutes
        )
        hint = (
            f": it holds {', '.join(t.value for t in held)} (timeframe=, --timeframe)"
            if held
            else f": it holds bars of {', '.join(sorted({s.provider for s in every}))}"
            if every
            else ""
        )
        raise InvalidInputError(f"the dataset holds no {timeframe.value} bars of {what}{hint}")
    feeds = sorted({s.feed for s in stored})
    if len(feeds) > 1:
        raise InvalidInputError(
            f"the dataset holds {provider} {timeframe.value} bars of feeds {', '.join(feeds)}: "
            "choose one with feed="
        )
    return stored


def _slice(table: pa.Table, start: dt.date, end: dt.date) -> pa.Table:
    lo, hi = day_bounds(start, end)
    ts = table["timestamp"]
    return table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))


def _symbols(table: pa.Table, symbols: Iterable[str]) -> pa.Table:
    wanted = pa.array(sorted(set(symbols)), pa.string())
    return table.filter(pc.is_in(table["symbol"], value_set=wanted))


def _merged(ranges: Iterable[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    out: list[tuple[dt.date, dt.date]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + dt.timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _load(
    sink: Sink, series: Series, symbols: set[str], ranges: list[tuple[dt.date, dt.date]]
) -> pa.Table:
    """The stored rows of ``symbols`` on the days of ``ranges``: through the sink's
    ``read_range`` when it has one (only those months are read), else its whole series,
    filtered."""
    ranges = _merged(ranges)
    read_range = getattr(sink, "read_range", None)
    if read_range is not None:
        tables = [read_range(series, symbols, lo, hi) for lo, hi in ranges]
        return pa.concat_tables(tables) if tables else BAR_SCHEMA.empty_table()
    every = _symbols(sink.read(series), symbols)
    return pa.concat_tables([_slice(every, lo, hi) for lo, hi in ranges])


def _regular(timeframe: Timeframe) -> Callable[[pa.Table], pa.Array]:
    calendar = nyse_calendar()

    def regular(table: pa.Table) -> pa.Array:
        if timeframe is Timeframe.D1 or table.num_rows == 0:
            return pa.array(np.ones(table.num_rows, dtype=bool))
        days = session_days(table["timestamp"])
        first, last = _EPOCH + dt.timedelta(int(days.min())), _EPOCH + dt.timedelta(int(days.max()))
        windows = calendar.windows(TimeRange(first, last), Session.REGULAR)
        ts = table["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False)
        return pa.array(in_sessions(np.asarray(ts), windows, timeframe.nanos))

    return regular


def read(
    data_dir: Path | str,
    *,
    provider: str,
    symbols: Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    timeframe: str = "1m",
    feed: str | None = None,
    adjustment: str = "raw",
    as_of: dt.date | str | None = None,
) -> ReadResult:
    """Bars of ``symbols`` from ``start`` to ``end`` (New York days, inclusive), adjusted as
    asked, with what the ledger knew on ``as_of`` (default: everything it knows now)."""
    first, last = _date(start, "start"), _date(end, "end")
    known = _date(as_of, "as_of")
    assert first is not None and last is not None
    if last < first:
        raise InvalidInputError(f"end {last} is before start {first}")
    tf = Timeframe.parse(timeframe)
    kinds_for(adjustment)  # an unknown adjustment fails first
    root = local_root(data_dir)
    if not root.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    sink = choose_sink(root).build(root)
    try:
        stored = _series(sink, provider, feed, tf)
        by_adjustment = {s.adjustment: s for s in stored}
        ledger = Ledger(open_store(dataset_root(root)))
        everything = ledger.actions(as_of=known)
        links = renames(everything)
        names = {s: earlier_names(s, links) for s in symbols}
        all_names = {n for s in symbols for n, _ in names[s]} | set(symbols)
        if RAW not in by_adjustment:
            if adjustment not in by_adjustment:
                held = ", ".join(sorted(by_adjustment))
                raise InvalidInputError(
                    f"the dataset holds no raw {provider} bars to adjust, and no {adjustment} "
                    f"series (it holds: {held})"
                )
            if known is not None:
                raise InvalidInputError(
                    f"as_of needs raw bars: the dataset holds {provider} bars only as the "
                    f"provider adjusted them ({adjustment})"
                )
            table = _load(sink, by_adjustment[adjustment], all_names, [(first, last)])
            return ReadResult(_finish(_relabel(table, names), first, last))
        actions = ledger.actions(as_of=known, symbols=all_names)
        # An action applies from its ex-date: one announced but not yet in effect on the day
        # read as of (today, by default) changes nothing yet; one on or before the first day
        # read changes none of its bars.
        in_effect = pa.scalar(known or clock.now().date(), pa.date32())
        actions = actions.filter(
            pc.and_(
                pc.less_equal(actions["ex_date"], in_effect),
                pc.greater(actions["ex_date"], pa.scalar(first, pa.date32())),
            )
        )
        actions = _deduplicated(actions)
        # A cash dividend is measured against the close of the session before its ex-date:
        # those days are read too (a few days a dividend, never the whole history).
        ranges = [(first, last)]
        if adjustment in ("dividend", "all"):
            dividends = actions.filter(pc.equal(actions["kind"], CASH_DIVIDEND))
            ranges += [(ex - LOOKBACK, ex) for ex in dividends["ex_date"].to_pylist()]
        # Old names' bars take the name asked for first, and so do their actions: a split
        # after a rename adjusts the company's bars from before it too.
        raw = _relabel(_load(sink, by_adjustment[RAW], all_names, ranges), names)
        actions = _as_asked(actions, names)
        found, notes = factors(actions, adjustment, closes_before(raw, _regular(tf)))
        table = apply(_slice(raw, first, last), found)
        notes += [
            f"{new}: bars before {day} are {old}'s (renamed)"
            for new, chain in names.items()
            for old, day in chain
        ]
        return ReadResult(_finish(table, first, last), tuple(dict.fromkeys(notes)))
    finally:
        sink.close()


def _deduplicated(actions: pa.Table) -> pa.Table:
    """When several providers reported one action (kind, symbol, ex-date), the records of the
    first provider only. Records of one provider with different ids are different actions (a
    regular and a special dividend on one ex-date) and are never merged."""
    if actions.num_rows == 0:
        return actions
    first: dict[tuple[object, ...], object] = {}
    keep = []
    columns = ["provider", "kind", "symbol", "ex_date"]
    for i, row in enumerate(actions.select(columns).to_pylist()):
        key = (row["kind"], row["symbol"], row["ex_date"])
        if first.setdefault(key, row["provider"]) == row["provider"]:
            keep.append(i)
    return actions.take(pa.array(keep, pa.int64()))


def _as_asked(actions: pa.Table, names: dict[str, list[tuple[str, dt.date]]]) -> pa.Table:
    """``actions`` with a company's old names replaced by the name asked for (unless the old
    name is asked for itself)."""
    mapping = {old: new for new, chain in names.items() for old, _ in chain if old not in names}
    if not mapping or actions.num_rows == 0:
        return actions
    symbols = [mapping.get(s, s) for s in actions["symbol"].to_pylist()]  # a few actions
    i = actions.schema.get_field_index("symbol")
    return actions.set_column(i, actions.schema.field(i), pa.array(symbols, pa.string()))


def _relabel(table: pa.Table, names: dict[str, list[tuple[str, dt.date]]]) -> pa.Table:
    """Bars of a company's old names, before each rename, labelled with the name asked for
    (on the symbol column's dictionary codes: no Python object a bar)."""
    if not any(names.values()) or table.num_rows == 0:
        return table
    encoded = symbol_codes(table["symbol"])
    labels = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    code = {name: i for i, name in enumerate(labels)}
    for new in names:
        if new not in code:
            code[new] = len(labels)
            labels.append(new)
    days = session_days(table["timestamp"])
    out = codes.copy()
    keep = np.ones(table.num_rows, dtype=bool)
    for new, chain in names.items():
        since = _EPOCH
        for old, day in chain:
            if old in names or old not in code:  # asked for itself, or nothing stored
                since = day
                continue
            rows = codes == code[old]
            mine = rows & (days >= (since - _EPOCH).days) & (days < (day - _EPOCH).days)
            out[mine] = code[new]
            keep &= ~(rows & ~mine)
            since = day
    symbol = pa.DictionaryArray.from_arrays(
        pa.array(out, pa.int32()), pa.array(labels, pa.string())
    ).cast(pa.string())
    i = table.schema.get_field_index("symbol")
    return table.set_column(i, table.schema.field(i), symbol).filter(pa.array(keep))


def _finish(table: pa.Table, first: dt.date, last: dt.date) -> pa.Table:
    table = _slice(table.select(BAR_SCHEMA.names).cast(BAR_SCHEMA), first, last)
    return table.sort_by(
        [("symbol", "ascending"), ("timestamp", "ascending")]
    ).replace_schema_metadata(None)


__all__ = ["ADJUSTMENTS", "ReadResult", "read"]
