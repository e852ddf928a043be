"""Derive a higher timeframe from stored one-minute bars, with the conventions that make it
agree with providers' own bars.

- Each window: open of its first minute, high and low over it, close of its last minute, volume
  and trade count summed, VWAP weighted by volume. A minute with volume but no prices (the IEX
  provider's odd-lot minutes) adds its volume and trades; its prices are skipped, and a window
  whose minutes all lack prices is a bar with volume and null prices, as the IEX provider
  defines one.
- Intraday windows are aligned to the regular session's open: a 1h bar starts 09:30, 10:30...
  An extended-session series keeps the same alignment, so its regular-hours bars equal the
  regular series'; its pre-market windows count back from 09:30 (the first 1h bar, labelled
  03:30, holds 04:00-04:29).
- Daily bars hold the regular session only (09:30 to the close, early closes too), stamped at
  New York midnight of their day, like the providers' daily bars.

From stored trades (``--from trades``), one-minute bars are built first with the rules of
:mod:`marketpipe.dataset.trade_bars` and the provider's :class:`TradeRules` (which conditions set
a price), then any longer timeframe from those minutes as above; they live in their own series
(``feed=<feed>-from-trades``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.dataset.operations import Selection
from marketpipe.dataset.trade_bars import bars_from_trades
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.jobs.upgrade import open_dataset
from marketpipe.model.calendar import TradingCalendar, nyse_calendar
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.schema import BAR_SCHEMA, conform
from marketpipe.model.ticks import TradeRules
from marketpipe.model.values import Series, Session, Timeframe
from marketpipe.plugins.sink import CommitRequest
from marketpipe.storage.compact import (
    ROWS_PER_FILE,
    bar_footers,
    gather_rows,
    owners,
    plan_groups,
)
from marketpipe.storage.layout import DERIVED_SUFFIX, FROM_TRADES_SUFFIX, is_derived, month_prefix
from marketpipe.storage.parquet_sink import ParquetSink
from marketpipe.storage.sinks import open_sink

TARGETS = (Timeframe.M5, Timeframe.M15, Timeframe.M30, Timeframe.H1, Timeframe.D1)
#: What bars built from trades may be: minutes too.
FROM_TRADES = (Timeframe.M1, *TARGETS)
_NS = 1_000_000_000


def aggregate(minutes: pa.Table, target: Timeframe, calendar: TradingCalendar) -> pa.Table:
    """``minutes`` (1-minute bars, any order) as ``target`` bars, sorted by symbol and time."""
    if target not in TARGETS:
        raise ValueError(f"cannot resample to {target.value}")
    if minutes.num_rows == 0:
        return BAR_SCHEMA.empty_table()
    table = minutes.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])
    ts = table["timestamp"].cast(pa.int64()).to_numpy()
    sessions = calendar.arrays
    midnights = sessions.midnights
    index = np.clip(np.searchsorted(midnights, ts, side="right") - 1, 0, len(midnights) - 1)
    opened = sessions.opens[index]
    if target is Timeframe.D1:
        keep = (ts >= opened) & (ts < sessions.closes[index])
        bucket = midnights[index]
    else:
        width = target.minutes * 60 * _NS
        keep = np.ones(len(ts), dtype=bool)
        bucket = opened + np.floor_divide(ts - opened, width) * width
    table = table.filter(pa.array(keep))
    bucket = bucket[keep]
    price = pc.is_valid(table["vwap"])
    volume = table["volume"].cast(pa.float64())
    work = pa.table(
        {
            "symbol": table["symbol"],
            "bucket": pa.array(bucket, pa.int64()),
            "open": table["open"],
            "high": table["high"],
            "low": table["low"],
            "close": table["close"],
            "volume": table["volume"],
            "trade_count": table["trade_count"],
            "pv": pc.multiply(table["vwap"], volume),
            "pvol": pc.if_else(price, volume, 0.0),
        }
    )
    grouped = work.group_by(["symbol", "bucket"], use_threads=False).aggregate(
        [
            ("open", "first"),
            ("high", "max"),
            ("low", "min"),
            ("close", "last"),
            ("volume", "sum"),
            ("trade_count", "sum"),
            ("pv", "sum"),
            ("pvol", "sum"),
        ]
    )
    pvol = grouped["pvol_sum"]
    vwap = pc.if_else(
        pc.greater(pvol, 0.0), pc.divide(grouped["pv_sum"], pc.max_element_wise(pvol, 1.0)), None
    )
    out = pa.table(
        {
            "symbol": grouped["symbol"],
            "timestamp": grouped["bucket"].cast(pa.timestamp("ns", tz="UTC")),
            "open": grouped["open_first"],
            "high": grouped["high_max"],
            "low": grouped["low_min"],
            "close": grouped["close_last"],
            "volume": grouped["volume_sum"],
            "trade_count": grouped["trade_count_sum"],
            "vwap": vwap,
        }
    )
    return conform(out).sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


@attrs.frozen
class ResampleResult:
    source: Series
    target: Series
    partitions: int
    bars_in: int
    bars_out: int


def derived_series(source: Series, target: Timeframe) -> Series:
    """Where bars derived from ``source`` live: their own series, never the provider's own
    bars of that timeframe (``feed=<feed>-from-1m``, ``feed=<feed>-from-trades``)."""
    suffix = FROM_TRADES_SUFFIX if source.timeframe is Timeframe.TRADES else DERIVED_SUFFIX
    return Series(source.provider, f"{source.feed}{suffix}", source.adjustment, target)


def _rules(provider: str) -> TradeRules:
    """The provider's trade rules; every trade sets prices if it is not installed here."""
    from marketpipe.plugins import registry

    try:
        return registry.get(provider).trade_rules
    except InvalidInputError:
        return TradeRules()


def run_resample(
    data_dir: Path,
    selection: Selection,
    target: Timeframe,
    on_progress: Callable[[int, int], None] | None = None,
    sink_name: str | None = None,
    sink_options: Mapping[str, str] | None = None,
    source_kind: Timeframe = Timeframe.M1,
) -> list[ResampleResult]:
    """Derive ``target`` bars from the selected 1-minute series (``source_kind`` trades: from
    the stored trades); only partitions whose source rows changed since they were last derived
    (or never were) are rebuilt."""
    if not data_dir.is_dir():
        raise InvalidInputError(f"no dataset at {data_dir}")
    allowed_targets = FROM_TRADES if source_kind is Timeframe.TRADES else TARGETS
    if target not in allowed_targets:
        allowed = ", ".join(t.value for t in allowed_targets)
        raise InvalidInputError(f"cannot resample to {target.value}: use {allowed}")
    sink = open_sink(data_dir, sink_name, sink_options)
    if not isinstance(sink, ParquetSink):
        sink.close()
        raise InvalidInputError("mp resample reads the month folders of a Parquet dataset")
    store = SqliteJobStore.for_data_dir(data_dir)
    catalog = sink.catalog
    calendar = nyse_calendar()
    wanted = {s.value for s in selection.symbols}
    try:
        open_dataset(data_dir, store)
        sources = [
            s
            for s in catalog.sync_all()
            if s.timeframe is source_kind and not is_derived(s.feed) and selection.takes(s)
        ]
        if not sources:
            what = "trades" if source_kind is Timeframe.TRADES else "1-minute series"
            raise InvalidInputError(f"no {what} stored for that selection to resample")
        results = []
        for source in sources:
            derived = derived_series(source, target)
            catalog.sync(derived)
            done = catalog.partition_times(derived)
            todo: dict[str, set[tuple[str, str]]] = {}
            for (symbol, day), fetched in catalog.partition_times(source).items():
                if wanted and symbol not in wanted:
                    continue
                if done.get((symbol, day), "") < fetched:
                    iso = dt.date.fromordinal(day)
                    todo.setdefault(f"{iso:%Y-%m}", set()).add((symbol, iso.isoformat()))
            bars_in = bars_out = 0
            for step, (month, keys) in enumerate(sorted(todo.items()), start=1):
                n_in, n_out = _resample_month(sink, source, derived, month, keys, calendar)
                bars_in += n_in
                bars_out += n_out
                if on_progress is not None:
                    on_progress(step, len(todo))
            parts = sum(len(k) for k in todo.values())
            results.append(ResampleResult(source, derived, parts, bars_in, bars_out))
        return results
    finally:
        sink.close()
        store.close()


_HOW = (
    "open first, high max, low min, close last, volume and trades summed, vwap "
    "volume-weighted; windows from the regular open; daily bars from the regular session"
)


def _resample_month(
    sink: ParquetSink,
    source: Series,
    derived: Series,
    month: str,
    keys: set[tuple[str, str]],
    calendar: TradingCalendar,
) -> tuple[int, int]:
    folder = month_prefix(source, month)
    with sink.store.lock(folder):  # the minutes as one consistent state of the folder
        footers = bar_footers(sink.store, folder)
        owner = {k: n for k, n in owners(footers).items() if k in keys}
        entries = {k: footers[n].entries[k] for k, n in owner.items()}
        groups = plan_groups(entries, ROWS_PER_FILE)
        minutes = [gather_rows(sink.store, folder, footers, owner, set(g)) for g in groups]
    bars_in = bars_out = 0
    for group, table in zip(groups, minutes, strict=True):
        chosen = set(group)
        coverage: dict[str, tuple[dt.date, ...]] = {}
        partial: dict[str, tuple[dt.date, ...]] = {}
        for (symbol, iso), entry in sorted(entries.items()):
            if symbol in chosen:
                day = dt.date.fromisoformat(iso)
                coverage[symbol] = (*coverage.get(symbol, ()), day)
                if not entry.complete:
                    partial[symbol] = (*partial.get(symbol, ()), day)
        if source.timeframe is Timeframe.TRADES:
            days = sorted({dt.date.fromisoformat(iso) for _, iso in entries})
            regular = [calendar.window(d, Session.REGULAR) for d in days if calendar.is_session(d)]
            bars = bars_from_trades(table, _rules(source.provider), regular)
            if derived.timeframe is not Timeframe.M1:
                bars = aggregate(bars, derived.timeframe, calendar)
        else:
            bars = aggregate(table, derived.timeframe, calendar)
        sink.commit(
            CommitRequest(
                table=bars,
                coverage=coverage,
                provider=derived.provider,
                feed=derived.feed,
                adjustment=derived.adjustment,
                timeframe=derived.timeframe,
                job_id="resample",
                partial=partial,
                extra_metadata={"derived_from": str(source), "resampled": _HOW},
            )
        )
        bars_in += table.num_rows
        bars_out += bars.num_rows
    return bars_in, bars_out
