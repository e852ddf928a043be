"""Conformance kits for plugin authors: call :func:`check_provider`, :func:`check_sink`
(:mod:`marketpipe.testing.kits.sink`) or :func:`check_validator` (:mod:`marketpipe.testing.kits.validator`)
from your tests.

It fetches real requests through your provider and checks what every provider must do: batches in
the canonical schema, only the requested symbols, only bars inside the requested sessions and
aligned to the timeframe, OHLCV invariants, no duplicates, identical output on repeat when the spec
claims determinism, and the seed's per-bar API. A provider that serves trades or quotes (its
spec's ``timeframes``) has each kind checked the same way, with the tick validators: the tick
schema, the symbols and sessions asked, positive prices and sizes, time order. A provider that reports corporate actions
(``fetch_actions``) has them checked too: the canonical schema, its own name in ``provider``, only
the symbols and days asked, kinds MarketPipe knows (or ``unknown``), records the ledger would
keep, one record an id, the same records on repeat. A failure raises ``AssertionError`` saying
what was wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pyarrow as pa

from marketpipe.model.actions import ACTION_COLUMNS, check_actions
from marketpipe.model.calendar import in_sessions, nyse_calendar
from marketpipe.model.errors import ProviderNotConfiguredError
from marketpipe.model.request import FetchRequest
from marketpipe.model.schema import conform, loose, schema_of
from marketpipe.model.values import Session, Symbol, Timeframe, TimeRange
from marketpipe.plugins import registry
from marketpipe.plugins.settings import describe_missing, resolve_settings
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.plugins.validator import ValidationContext, Validator
from marketpipe.testing.kits.sink import SinkReport, check_sink
from marketpipe.testing.kits.validator import ValidatorReport, check_validator
from marketpipe.validate.ohlcv import OhlcvValidator
from marketpipe.validate.ticks import QuoteValidator, TradeValidator

__all__ = [
    "ConformanceReport",
    "SinkReport",
    "ValidatorReport",
    "check_provider",
    "check_sink",
    "check_validator",
]


@attrs.frozen
class ConformanceReport:
    provider: str
    requests: int
    bars: int
    #: Corporate actions reported for the symbols and days asked (``None``: the provider
    #: reports none).
    actions: int | None = None


def _actions(spec: ProviderSpec, values: Mapping[str, Any], symbols: list[str],
             start: dt.date, end: dt.date) -> pa.Table | None:  # fmt: skip
    provider = spec.factory(values)
    try:
        return provider.fetch_actions(symbols, start, end)
    finally:
        provider.close()


def _check_actions(
    spec: ProviderSpec, values: Mapping[str, Any], symbols: list[str], start: dt.date,
    end: dt.date,
) -> int | None:  # fmt: skip
    """The corporate-action checks; returns how many actions the provider reported."""
    table = _actions(spec, values, symbols, start, end)
    if table is None:
        return None
    where = f"{spec.name} fetch_actions"
    assert isinstance(table, pa.Table), f"{where} must return a pyarrow.Table or None"
    missing = [name for name in ACTION_COLUMNS if name not in table.column_names]
    assert not missing, f"{where}: columns missing from the action schema: {missing}"
    table = table.select(list(ACTION_COLUMNS))
    valid, rejected = check_actions(table)
    if rejected.num_rows:
        sample = rejected.slice(0, 3).select(["id", "kind", "reason"]).to_pylist()
        raise AssertionError(f"{where}: {rejected.num_rows} records the ledger refuses: {sample}")
    rows = valid.to_pylist()
    others = sorted({str(r["provider"]) for r in rows} - {spec.name})
    assert not others, f"{where}: provider must be {spec.name!r}, got {others}"
    asked = set(symbols)
    stray = sorted({r["symbol"] for r in rows if r["symbol"] not in asked
                    and r["new_symbol"] not in asked})  # fmt: skip
    assert not stray, f"{where}: asked for {sorted(asked)}, got actions of {stray}"
    outside = [(r["id"], r["ex_date"]) for r in rows
               if r["ex_date"] is not None and not start <= r["ex_date"] <= end]  # fmt: skip
    assert not outside, f"{where}: asked for {start}..{end}, got {outside[:3]}"
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{where}: an id appears more than once"
    again = _actions(spec, values, symbols, start, end)
    assert again is not None
    same = [c for c in ACTION_COLUMNS if c != "fetched_at"]
    key = [("id", "ascending")]
    assert again.select(same).sort_by(key).equals(table.select(same).sort_by(key)), (
        f"{where}: a repeat returned other records"
    )
    return len(rows)


def _fetch(spec: ProviderSpec, values: Mapping[str, Any], request: FetchRequest) -> pa.Table:
    schema = schema_of(request.timeframe)
    provider = spec.factory(values)
    try:
        batches = list(provider.fetch(request))
    finally:
        provider.close()
    for batch in batches:
        assert isinstance(batch, pa.RecordBatch), (
            f"{spec.name}: fetch must yield pyarrow.RecordBatch, got {type(batch).__name__}"
        )
        got = [(f.name, f.type) for f in batch.schema]
        assert got == [(f.name, f.type) for f in schema], (
            f"{spec.name}: batch schema differs from the {request.timeframe.kind.value} "
            f"schema:\n{batch.schema}"
        )
    tables = [conform(b, strict=False, schema=schema) for b in batches]
    return pa.concat_tables(tables) if tables else loose(schema).empty_table()


def check_provider(
    provider: str | ProviderSpec,
    *,
    symbols: Iterable[str] = ("AAPL", "MSFT"),
    start: str = "2024-03-04",
    end: str = "2024-03-08",
    timeframes: Iterable[str] | None = None,
    sessions: Iterable[str] | None = None,
    settings: Mapping[str, str] | None = None,
    expect_bars: bool = True,
    actions_start: str | None = None,
    actions_end: str | None = None,
) -> ConformanceReport:
    """Run every conformance check against ``provider`` (a name or a spec).

    Its settings are resolved as ``mp`` resolves them: ``settings`` (like ``-o KEY=VALUE``),
    then ``MARKETPIPE_<PROVIDER>_<KEY>``, then the config file, then the defaults; a required
    one missing everywhere is a :class:`~marketpipe.model.errors.ProviderNotConfiguredError`
    naming it. ``expect_bars=False`` accepts a provider that has no bars for the days asked
    (a skeleton, or a test server with nothing for them); every other check still runs.
    Corporate actions are asked for ``actions_start``..``actions_end`` (default: the days of
    the bars); widen it to a year to see some."""
    spec = provider if isinstance(provider, ProviderSpec) else registry.get(provider)
    resolved = resolve_settings(spec, settings)
    if resolved.missing:
        raise ProviderNotConfiguredError(
            f"provider {spec.name} is not configured: {describe_missing(spec, resolved.missing)}"
        )
    settings = resolved.values
    wanted = tuple(Symbol(s) for s in symbols)
    calendar = nyse_calendar()
    tfs = (
        [Timeframe.parse(t) for t in timeframes]
        if timeframes
        else sorted(spec.timeframes, key=lambda t: t.order)
    )
    sess = (
        [Session.parse(s) for s in sessions]
        if sessions
        else sorted(spec.sessions, key=lambda s: s.value)
    )
    requests = bars = 0
    for session in sess:
        windows = tuple(calendar.windows(TimeRange(start, end), session))
        for timeframe in tfs:
            request = FetchRequest(
                symbols=wanted, windows=windows, timeframe=timeframe, session=session
            )
            table = _fetch(spec, settings, request)
            requests += 1
            bars += table.num_rows
            where = f"{spec.name} {timeframe.value} {session.value}"
            if expect_bars:
                assert table.num_rows > 0, f"{where}: no bars for {start}..{end}"
            context = ValidationContext(
                symbols=frozenset(s.value for s in wanted),
                windows=windows,
                timeframe=timeframe,
                allow_null_prices=spec.null_price_bars,
            )
            validator: Validator = (
                TradeValidator()
                if timeframe is Timeframe.TRADES
                else QuoteValidator()
                if timeframe is Timeframe.QUOTES
                else OhlcvValidator()
            )
            rejected = validator.validate(table, context).rejected
            what = timeframe.kind.value
            if rejected.num_rows:
                sample = rejected.slice(0, 3).select(["symbol", "timestamp", "reason"]).to_pylist()
                raise AssertionError(f"{where}: {rejected.num_rows} invalid {what}, e.g. {sample}")
            if not timeframe.is_bar and table.num_rows:  # a tick has no length: in a window
                stamps = table["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False)
                outside = int((~in_sessions(stamps, windows, 1)).sum())
                assert not outside, f"{where}: {outside} {what} outside the sessions asked"
            if spec.deterministic:
                again = _fetch(spec, settings, request)
                assert again.equals(table), f"{where}: claims determinism but a repeat differs"
        # Symbols respected: asking for one symbol yields only that symbol.
        single = FetchRequest(
            symbols=wanted[:1], windows=windows, timeframe=tfs[0], session=session
        )
        got = set(_fetch(spec, settings, single)["symbol"].unique().to_pylist())
        assert got <= {wanted[0].value}, f"{spec.name}: asked for {wanted[0]}, got {sorted(got)}"
    actions = _check_actions(
        spec,
        settings,
        [s.value for s in wanted],
        dt.date.fromisoformat(actions_start or start),
        dt.date.fromisoformat(actions_end or end),
    )
    return ConformanceReport(spec.name, requests, bars, actions)
