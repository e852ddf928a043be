"""One way to read a dataset: ``marketpipe.read(...)`` and ``mp read``.

Bars (and trades and quotes: ``kind=``) come from the stored **raw** series of the provider, adjusted at read time with the ledger
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
from marketpipe.dataset.renames import Renames, earlier_names, renames, successors
from marketpipe.model import clock
from marketpipe.model.actions import CASH_DIVIDEND
from marketpipe.model.calendar import day_bounds, in_sessions, nyse_calendar
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.schema import encode_symbols, schema_of, symbol_codes
from marketpipe.model.values import RAW, Series, Session, Timeframe, TimeRange
from marketpipe.plugins.sink import Sink
from marketpipe.storage.layout import META_DIR
from marketpipe.storage.ledger import Ledger
from marketpipe.storage.location import dataset_root, local_root
from marketpipe.storage.parquet_files import sort_rows
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
        held = sorted({s.timeframe for s in every if s.provider == provider}, key=lambda t: t.order)
        hint = (
            f": it holds {', '.join(t.value for t in held)} (timeframe=, --timeframe; kind=, --kind)"
            if held
            else f": it holds data of {', '.join(sorted({s.provider for s in every}))}"
            if every
            else ""
        )
        raise InvalidInputError(f"the dataset holds no {_rows(timeframe)} of {what}{hint}")
    feeds = sorted({s.feed for s in stored})
    if len(feeds) > 1:
        raise InvalidInputError(
            f"the dataset holds {provider} {_rows(timeframe)} of feeds {', '.join(feeds)}: "
            "choose one with feed="
        )
    return stored


def _rows(timeframe: Timeframe) -> str:
    """What a series' rows are called: ``1m bars``, ``trades``."""
    return f"{timeframe.value} bars" if timeframe.is_bar else timeframe.value


def _slice(table: pa.Table, start: dt.date, end: dt.date) -> pa.Table:
    """The rows of ``start``..``end``: ``table`` itself when they all are (a filter would copy
    every column; compared as nanoseconds, a tick's stamp being no Python datetime)."""
    lo, hi = day_bounds(start, end)
    ts = table["timestamp"]
    if table.num_rows:
        bounds = pc.min_max(ts.cast(pa.int64()))
        if bounds["min"].as_py() >= lo.value and bounds["max"].as_py() < hi.value:
            return table
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


def stored_rows(
    sink: Sink, series: Series, symbols: set[str], ranges: list[tuple[dt.date, dt.date]]
) -> pa.Table:
    """The stored rows of ``symbols`` on the days of ``ranges``: through the sink's
    ``read_range`` when it has one (only those months are read), else its whole series,
    filtered."""
    ranges = _merged(ranges)
    read_range = getattr(sink, "read_range", None)
    if read_range is not None:
        tables = [read_range(series, symbols, lo, hi) for lo, hi in ranges]
        return pa.concat_tables(tables) if tables else schema_of(series.timeframe).empty_table()
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
    timeframe: str | None = None,
    feed: str | None = None,
    adjustment: str = "raw",
    as_of: dt.date | str | None = None,
    kind: str = "bars",
) -> ReadResult:
    """Bars (``kind="trades"`` or ``"quotes"``: ticks) of ``symbols`` from ``start`` to
    ``end`` (New York days, inclusive), adjusted as asked, with what the ledger knew on
    ``as_of`` (default: everything it knows now). Ticks take the split adjustment: a price by
    the factor, a size by its inverse."""
    first, last = _date(start, "start"), _date(end, "end")
    known = _date(as_of, "as_of")
    assert first is not None and last is not None
    if last < first:
        raise InvalidInputError(f"end {last} is before start {first}")
    if kind != "bars" and timeframe is not None:
        raise InvalidInputError(f"timeframe is the length of a bar: {kind} have none")
    tf = Timeframe.of(kind, timeframe)
    kinds_for(adjustment)  # an unknown adjustment fails first
    if not tf.is_bar and adjustment not in (RAW, "split"):
        raise InvalidInputError(
            f"{tf.value} take adjustment raw or split: a dividend is measured against a "
            "session's close, which bars have"
        )
    root = local_root(data_dir)
    if not root.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    upgrade(root)
    sink = choose_sink(root).build(root)
    try:
        stored = _series(sink, provider, feed, tf)
        by_adjustment = {s.adjustment: s for s in stored}
        ledger = Ledger(open_store(dataset_root(root)))
        everything = ledger.actions(as_of=known)
        links = renames(everything)
        plans = {s: _sources(s, links) for s in dict.fromkeys(symbols)}
        all_names = {n for plan in plans.values() for n, _, _, _ in plan}
        if RAW not in by_adjustment:
            if adjustment not in by_adjustment:
                held = ", ".join(sorted(by_adjustment))
                raise InvalidInputError(
                    f"the dataset holds no raw {provider} {_rows(tf)} to adjust, and no "
                    f"{adjustment} series (it holds: {held})"
                )
            if known is not None:
                raise InvalidInputError(
                    f"as_of needs raw data: the dataset holds {provider} {_rows(tf)} only as "
                    f"the provider adjusted them ({adjustment})"
                )
            table = stored_rows(sink, by_adjustment[adjustment], all_names, [(first, last)])
            table = _finish(_assemble(table, plans), first, last, tf)
            return ReadResult(table, tuple(_missing(table, plans, tf.kind.value)))
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
        # Each name asked gets its company's bars of its days, whatever else is asked, and
        # the company's actions: a split after a rename adjusts the bars from before it too.
        # The symbols encoded once: the closes before dividends and the factors both look
        # rows up by symbol (``_finish`` makes the column text again).
        raw = encode_symbols(
            _assemble(stored_rows(sink, by_adjustment[RAW], all_names, ranges), plans)
        )
        actions = _as_asked(actions, plans)
        # Ticks take no dividend (refused above): the close is never asked of them.
        found, notes = factors(actions, adjustment, closes_before(raw, _regular(tf)))
        table = _finish(apply(_slice(raw, first, last), found), first, last, tf)
        notes += [
            f"{asked}: {tf.kind.value} before {day} are {old}'s (renamed)"
            for asked in plans
            for old, day in earlier_names(asked, links)
        ]
        notes += _missing(table, plans, tf.kind.value)
        return ReadResult(table, tuple(dict.fromkeys(notes)))
    finally:
        sink.close()


def upgrade(root: Path) -> None:
    """Bring a dataset written by an earlier release to the current layout before reading it
    (once; see :mod:`marketpipe.storage.upgrade`)."""
    from marketpipe.storage.upgrade import is_current

    if is_current(root) or not (root / META_DIR).is_dir():
        return
    from marketpipe.jobs.store import SqliteJobStore
    from marketpipe.jobs.upgrade import open_dataset

    store = SqliteJobStore.for_data_dir(root)
    try:
        open_dataset(root, store)
    finally:
        store.close()


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


#: ``asked name -> [(stored name, first day, day after the last, rank)]``: where a name's bars
#: are, day by day; on a day several sources hold, the lowest rank wins.
Sources = list[tuple[str, dt.date, dt.date, int]]
_ALWAYS = (dt.date.min, dt.date.max)


def _sources(asked: str, links: Renames) -> Sources:
    """Where ``asked``'s bars are stored. Its own name, every day; before each rename of its
    company, the name it had then (ranked first on those days: a provider serves a renamed
    company's early days under either name); and, if ``asked`` was itself renamed away, the
    later names' bars of the days it traded under ``asked`` (ranked after its own)."""
    out: Sources = [(asked, *_ALWAYS, 1)]
    since = dt.date.min
    for old, day in earlier_names(asked, links):
        out.append((old, since, day, 0))
        since = day
    forward = successors(links)
    if asked in forward:
        _, ended = forward[asked]
        step = {old: new for new, olds in links.items() for old, _ in olds}
        later, seen = asked, {asked}
        while later in step and step[later] not in seen:
            later = step[later]
            seen.add(later)
            out.append((later, dt.date.min, ended, 2))
    return out


def _assemble(table: pa.Table, plans: dict[str, Sources]) -> pa.Table:
    """The rows of each name asked, from its sources, labelled with it (on the symbol
    column's dictionary codes: no Python object a bar). A name's rows never depend on what
    else is asked; a stored row may appear under two names asked (OLDCO and NEWCO both)."""
    if table.num_rows == 0 or all(len(plan) == 1 for plan in plans.values()):
        return table  # no renames: each name its own rows
    encoded = symbol_codes(table["symbol"])
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    code = {name: i for i, name in enumerate(encoded.dictionary.to_pylist())}
    days = session_days(table["timestamp"])
    take: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    names = list(plans)
    for index, asked in enumerate(names):
        rows_parts, rank_parts = [], []
        for source, lo, hi, rank in plans[asked]:
            if source not in code:
                continue
            mine = codes == code[source]
            if lo > dt.date.min:
                mine &= days >= (lo - _EPOCH).days
            if hi < dt.date.max:
                mine &= days < (hi - _EPOCH).days
            rows = np.flatnonzero(mine)
            rows_parts.append(rows)
            rank_parts.append(np.full(len(rows), rank, dtype=np.int64))
        if not rows_parts:
            continue
        rows = np.concatenate(rows_parts)
        ranks = np.concatenate(rank_parts)
        # On each day, the rows of the best-ranked source holding any.
        row_days = days[rows]
        order = np.lexsort((ranks, row_days))
        unique_days, first = np.unique(row_days[order], return_index=True)
        best = ranks[order][first]
        keep = ranks == best[np.searchsorted(unique_days, row_days)]
        take.append(rows[keep])
        labels.append(np.full(int(keep.sum()), index, dtype=np.int32))
    if not take:
        return table.slice(0, 0)
    symbol = pa.DictionaryArray.from_arrays(
        pa.array(np.concatenate(labels), pa.int32()), pa.array(names, pa.string())
    ).cast(pa.string())
    out = table.take(pa.array(np.concatenate(take)))
    i = out.schema.get_field_index("symbol")
    return out.set_column(i, out.schema.field(i), symbol)


def _as_asked(actions: pa.Table, plans: dict[str, Sources]) -> pa.Table:
    """The actions of each name asked: those of every name of its company, labelled with it."""
    if actions.num_rows == 0 or all(len(plan) == 1 for plan in plans.values()):
        return actions
    parts = []
    for asked, plan in plans.items():
        company = pa.array(sorted({source for source, _, _, _ in plan}), pa.string())
        mine = actions.filter(pc.is_in(actions["symbol"], value_set=company))
        i = mine.schema.get_field_index("symbol")
        label = pa.array([asked] * mine.num_rows, pa.string())
        parts.append(mine.set_column(i, mine.schema.field(i), label))
    return pa.concat_tables(parts)


def _missing(table: pa.Table, plans: dict[str, Sources], what: str = "bars") -> list[str]:
    """A note for each name asked with no row in the range read (an unknown symbol, a typo,
    an old name outside its days)."""
    held = set(pc.unique(table["symbol"]).to_pylist()) if table.num_rows else set()
    return [f"{asked}: no {what} stored for these days" for asked in plans if asked not in held]


def _finish(table: pa.Table, first: dt.date, last: dt.date, timeframe: Timeframe) -> pa.Table:
    """The rows of ``first``..``last`` in the canonical columns, by symbol then time (a stable
    sort: ticks sharing a stamp keep the provider's order). Rows already inside and in order (a
    symbol's day of a million trades, read straight from its file) are neither filtered nor
    sorted again: each would copy every column."""
    schema = schema_of(timeframe)
    table = table.select(schema.names)
    if not table.schema.equals(schema):
        table = table.cast(schema)
    table = sort_rows(_slice(table, first, last))
    return table.replace_schema_metadata(None)


__all__ = ["ADJUSTMENTS", "ReadResult", "read"]
