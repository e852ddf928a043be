"""Typed records that plugins return from their hooks (see :mod:`marketpipe.plugins.hookspecs`)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from marketpipe.model.ticks import TradeRules
from marketpipe.model.values import RAW, Kind, Series, Session, Timeframe

if TYPE_CHECKING:
    from marketpipe.plugins.provider import IMarketDataProvider
    from marketpipe.plugins.sink import ListingSink, Sink
    from marketpipe.plugins.validator import Validator

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_SETTING_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def normalise_name(value: str) -> str:
    name = value.strip().lower()
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid plugin name {value!r}: start with a letter; use a-z, 0-9, '-' or '_'"
        )
    return name


def _normalise_setting(value: str) -> str:
    name = value.strip().lower()
    if not _SETTING_RE.fullmatch(name):
        raise ValueError(f"invalid setting name {value!r}: use a-z, 0-9 and '_'")
    return name


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class Setting:
    """One provider setting, resolved from ``-o KEY=VALUE``, ``MARKETPIPE_<PROVIDER>_<KEY>``,
    the config file, or ``default``, in that order.

    ``secret`` values are wrapped in :class:`marketpipe.model.secrets.Secret` and never stored or shown.
    ``env`` lists extra environment variables accepted for it (a vendor's own convention, such as
    ``APCA_API_KEY_ID``), consulted after MarketPipe's own variable.
    """

    name: str = attrs.field(converter=_normalise_setting)
    description: str
    default: str | None = None
    secret: bool = False
    required: bool = False
    env: tuple[str, ...] = attrs.field(default=(), converter=_strings)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(_normalise_setting(v) for v in value)


def _settings(value: Iterable[Setting]) -> tuple[Setting, ...]:
    return tuple(value)


def _share(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be above 0 and at most 1, got {value!r}")


def _timeframes(value: Any) -> frozenset[Timeframe]:
    return frozenset(Timeframe.parse(v) for v in value)


def _sessions(value: Any) -> frozenset[Session]:
    return frozenset(Session.parse(v) for v in value)


@attrs.frozen
class ProviderSpec:
    """A market-data provider.

    :param factory: builds the provider from its resolved settings (``name -> value``; secrets as
        :class:`~marketpipe.model.secrets.Secret`).
    :param deterministic: the same request always yields identical bars (the conformance kit
        checks it).
    :param null_price_bars: the provider documents bars with volume but null prices (a minute whose
        trades set no price); the validator accepts exactly those.
    :param timeframes: what it serves: bar timeframes, and ``trades`` or ``quotes`` for a
        provider that serves ticks (every bar timeframe by default, no ticks).
    :param max_symbols_per_unit: at most this many symbols per fetch (``None``: no limit).
    :param max_days_per_unit: at most this many days per fetch (``None``: no limit).
    :param series_settings: the settings whose values change the bars themselves (Alpaca's
        ``adjustment``, a simulator's ``seed``). They are part of the series: a setting named
        ``adjustment`` becomes the dataset's ``adjustment=`` key (``raw`` when the provider has
        none), and a dataset refuses bars written with other values of the rest, so two kinds of
        bars never mix in one series.
    :param data_delay: how long after a session ends the provider's bars for it are final (Alpaca
        cannot serve the last 15 minutes of SIP data on its free plan). A day fetched earlier is
        stored as partial and fetched again by the next ingest or ``mp update``.
    :param day_files: each session day is one source file that every unit of that day reads (a
        flat-file provider): on a cluster, a day's units go to one worker, which reads the
        file once for all of them.
    :param trade_rules: which of its trades set a bar's prices, by their conditions (``mp
        resample --from trades``; by default every trade does).
    :param fill: the share of a session's bars (or of its estimated ticks) a symbol-day of this
        provider typically holds, for sizing units (1 by default: every minute). A whole
        market's minute file holds about a third of its tickers' minutes (most trade in a
        few): units of ``--batch-size`` expected rows then take that many more symbols, and a
        unit of only busy symbols holds at most ``1 / fill`` times as many rows.
    :param thin_day_fraction: ``mp status`` flags a stored day with fewer bars than this share
        of its session's bars as suspiciously thin (a provider that only has bars for minutes
        with trades on a small venue sets it low).
    """

    name: str = attrs.field(converter=normalise_name)
    factory: Callable[[Mapping[str, Any]], IMarketDataProvider]
    description: str
    settings: tuple[Setting, ...] = attrs.field(default=(), converter=_settings)
    timeframes: frozenset[Timeframe] = attrs.field(
        default=frozenset(Timeframe.bars()), converter=_timeframes
    )
    sessions: frozenset[Session] = attrs.field(default=frozenset(Session), converter=_sessions)
    deterministic: bool = False
    null_price_bars: bool = False
    max_symbols_per_unit: int | None = None
    max_days_per_unit: int | None = None
    series_settings: tuple[str, ...] = attrs.field(default=(), converter=_names)
    data_delay: dt.timedelta = dt.timedelta(0)
    thin_day_fraction: float = 0.5
    fill: float = attrs.field(default=1.0, validator=_share)
    trade_rules: TradeRules = attrs.field(factory=TradeRules)
    day_files: bool = False
    distribution: str | None = attrs.field(default=None, eq=False)
    version: str | None = attrs.field(default=None, eq=False)

    def adjustment(self, settings: Mapping[str, Any]) -> str:
        """The ``adjustment=`` key of bars fetched with these settings."""
        if "adjustment" not in self.series_settings:
            return RAW
        value = str(settings.get("adjustment") or RAW).strip().lower()
        return ",".join(sorted(p.strip() for p in value.split(","))) or RAW

    def series(self, feed: str, timeframe: Timeframe, settings: Mapping[str, Any]) -> Series:
        """The series that rows fetched with these settings belong to. A provider's
        ``adjustment`` setting adjusts its bars: its trades and quotes are as printed (``raw``;
        ``marketpipe.read`` adjusts them)."""
        adjustment = self.adjustment(settings) if timeframe.is_bar else RAW
        return Series(self.name, feed, adjustment, timeframe)

    def defining(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """The settings of a job that say which series its bars are (the feed, the series
        settings, a file ``source``): a later update or resume carries them over. Every other
        setting (a base URL, a rate limit, keys) resolves as of then: ``-o``, the environment,
        the config file, the defaults."""
        carried = {"feed", "source", *self.series_settings}
        return {k: str(v) for k, v in settings.items() if k in carried}

    def shaping(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """The series settings other than ``adjustment``, as stored with the series."""
        return {
            name: str(settings.get(name) or "")
            for name in self.series_settings
            if name != "adjustment"
        }


def _kinds(value: Any) -> frozenset[Kind]:
    return frozenset(Kind.parse(v) for v in value)


@attrs.frozen
class ValidatorSpec:
    """A validator: ``factory()`` returns an object with ``validate(table, context)``; it
    checks the rows of the ``kinds`` it names (bars by default)."""

    name: str = attrs.field(converter=normalise_name)
    factory: Callable[[], Validator]
    description: str
    kinds: frozenset[Kind] = attrs.field(default=frozenset({Kind.BARS}), converter=_kinds)
    distribution: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class SinkSpec:
    """A storage sink, chosen with ``--sink NAME`` (or ``sink = "NAME"`` in the config file, or
    ``MARKETPIPE_SINK``).

    :param factory: ``factory(root, settings)`` builds the sink for the dataset at ``root``: a
        :class:`pathlib.Path`, or a URL string (``s3://bucket/prefix``) for a dataset in object
        storage, which a sink that cannot write there refuses with
        :class:`marketpipe.model.errors.InvalidInputError`. ``settings`` are its resolved settings
        (``--sink-option KEY=VALUE``, ``MARKETPIPE_SINK_<SINK>_<KEY>``, ``[sinks.<name>]`` in the
        config file, or the default; secrets as :class:`~marketpipe.model.secrets.Secret`).
        The sink is a :class:`~marketpipe.plugins.sink.ListingSink` (it writes, reads and lists
        what it holds; core keeps its catalog), or a full
        :class:`~marketpipe.plugins.sink.Sink` that keeps a catalog of its own.
    :param settings: the settings it takes, declared like a provider's.
    :param kinds: the kinds of data it stores (bars by default; ``trades`` and ``quotes`` for a
        sink that keeps their schemas whole, nanoseconds and lists included). A job of another
        kind is refused before it starts; the sink kit checks each kind named.
    """

    name: str = attrs.field(converter=normalise_name)
    factory: Callable[[Path | str, Mapping[str, Any]], Sink | ListingSink]
    description: str
    settings: tuple[Setting, ...] = attrs.field(default=(), converter=_settings)
    kinds: frozenset[Kind] = attrs.field(default=frozenset({Kind.BARS}), converter=_kinds)
    distribution: str | None = attrs.field(default=None, eq=False)
    version: str | None = attrs.field(default=None, eq=False)
