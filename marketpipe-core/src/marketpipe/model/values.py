"""Value objects: symbols, time ranges, timeframes and trading sessions."""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from marketpipe.model.errors import InvalidInputError

_SYMBOL_RE = re.compile(r"[A-Z0-9.\-+=^#]{1,12}")
_HAS_ALNUM = re.compile(r"[A-Z0-9]")
SYMBOL_RULE = "1 to 12 characters: letters, digits and . - + = ^ # (at least one letter or digit)"


def _to_symbol_text(value: Any) -> str:
    if isinstance(value, Symbol):
        return value.value
    if not isinstance(value, str):
        raise InvalidInputError(f"invalid symbol {value!r}: expected text, {SYMBOL_RULE}")
    text = value.strip().upper()
    if not _SYMBOL_RE.fullmatch(text) or not _HAS_ALNUM.search(text):
        raise InvalidInputError(f"invalid symbol {value!r}: use {SYMBOL_RULE}")
    return text


@attrs.frozen(order=True)
class Symbol:
    """A ticker, upper-cased and validated (``BRK.B``, ``BF-B``, ``MDGN+``).

    The allowed characters cannot form a path separator, NUL or a control character, so a symbol can
    never lead a file outside the data root.
    """

    value: str = attrs.field(converter=_to_symbol_text)

    @classmethod
    def parse_list(cls, text: str) -> tuple[Symbol, ...]:
        """Parse ``"AAPL, msft"`` into unique symbols, keeping the order given."""
        parts = [p for p in (s.strip() for s in text.split(",")) if p]
        if not parts:
            raise InvalidInputError("no symbols given: pass --symbols AAPL,MSFT")
        return tuple(dict.fromkeys(cls(p) for p in parts))

    def __str__(self) -> str:
        return self.value


def symbols_of(value: object) -> tuple[Symbol, ...]:
    """Unique symbols, in the order given, of ``"AAPL,MSFT"``, one symbol or any iterable of
    symbols and names (an attrs converter). A symbol already made is kept: a whole market's
    10,000 were made again, 5 ms."""
    if isinstance(value, str):
        return Symbol.parse_list(value)
    items = [value] if isinstance(value, Symbol) else list(value)  # type: ignore[call-overload]
    return tuple(dict.fromkeys(v if type(v) is Symbol else Symbol(v) for v in items))


def usable_symbols(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(usable, unusable)``, each sorted: the names that are MarketPipe symbols exactly as
    written, and the others (a source's lower-case class suffix, a character no symbol takes)."""
    usable: list[str] = []
    unusable: list[str] = []
    for name in sorted(set(names)):
        try:
            ok = _to_symbol_text(name) == name  # the check of a Symbol, without making one
        except InvalidInputError:
            ok = False
        (usable if ok else unusable).append(name)
    return usable, unusable


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        raise InvalidInputError(f"expected a calendar day, got a datetime {value!r}")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInputError(f"invalid date {value!r}: use YYYY-MM-DD") from None
    raise InvalidInputError(f"invalid date {value!r}: use YYYY-MM-DD")


@attrs.frozen
class TimeRange:
    """Inclusive range of New York calendar days, ``start`` to ``end``."""

    start: dt.date = attrs.field(converter=_to_date)
    end: dt.date = attrs.field(converter=_to_date)

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInputError(
                f"end date {self.end} is before start date {self.start}: swap them"
            )

    @classmethod
    def single_day(cls, day: dt.date | str) -> TimeRange:
        return cls(day, day)

    def days(self) -> Iterator[dt.date]:
        """Every calendar day of the range (sessions come from the calendar)."""
        day = self.start
        while day <= self.end:
            yield day
            day += dt.timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


class Kind(enum.Enum):
    """A kind of market data: bars, or the trades and quotes beneath them."""

    BARS = "bars"
    TRADES = "trades"
    QUOTES = "quotes"

    @classmethod
    def parse(cls, text: str | Kind) -> Kind:
        if isinstance(text, Kind):
            return text
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(k.value for k in cls)
            raise InvalidInputError(f"invalid kind {text!r}: use one of {allowed}") from None


class Timeframe(enum.Enum):
    """What one row of a series is: a bar of a length (values are what ``--timeframe`` takes,
    ``5m``), or one tick (``trades``, ``quotes``: ``--kind``).

    One key names both, as Databento's ``schema`` names ``ohlcv-1m`` and ``trades`` alike: a
    series is (provider, feed, adjustment, timeframe), and a tick series is the same machinery
    with a tick in the last place (see :attr:`kind`). Only bars have a length
    (:attr:`minutes`).
    """

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    D1 = "1d"
    TRADES = "trades"
    QUOTES = "quotes"

    @property
    def kind(self) -> Kind:
        return Kind(self.value) if self.value in _TICKS else Kind.BARS

    @property
    def is_bar(self) -> bool:
        return self.value not in _TICKS

    @property
    def minutes(self) -> int:
        if not self.is_bar:
            raise ValueError(f"{self.value} have no bar length")  # our bug: a tick as a bar
        return _MINUTES[self.value]

    @property
    def nanos(self) -> int:
        return self.minutes * 60 * 1_000_000_000

    @property
    def order(self) -> int:
        """Sorts bars by length, after the ticks beneath them."""
        return _MINUTES.get(self.value, -1 if self is Timeframe.QUOTES else 0)

    @classmethod
    def bars(cls) -> tuple[Timeframe, ...]:
        """The bar timeframes, shortest first."""
        return tuple(t for t in cls if t.is_bar)

    @classmethod
    def of(cls, kind: Kind | str, timeframe: str | Timeframe | None = None) -> Timeframe:
        """The series key of ``kind`` (bars: of ``timeframe``, ``1m`` by default)."""
        kind = Kind.parse(kind)
        if kind is Kind.BARS:
            return cls.parse(timeframe or cls.M1, bars_only=True)
        return cls(kind.value)

    @classmethod
    def parse(cls, text: str | Timeframe, *, bars_only: bool = False) -> Timeframe:
        """``bars_only``: refuse ``trades`` and ``quotes`` (what ``--timeframe`` takes)."""
        if isinstance(text, Timeframe):
            value = text
        else:
            try:
                value = cls(text.strip().lower())
            except ValueError:
                allowed = ", ".join(t.value for t in cls.bars())
                raise InvalidInputError(
                    f"invalid timeframe {text!r}: use one of {allowed}"
                ) from None
        if bars_only and not value.is_bar:
            raise InvalidInputError(
                f"{value.value} are not a timeframe: ask for them with --kind {value.value}"
            )
        return value


_TICKS = frozenset({"trades", "quotes"})
_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "1d": 1440}


class Session(enum.Enum):
    """Which hours of a trading day: the exchange's regular session or 04:00-20:00 New York."""

    REGULAR = "regular"
    EXTENDED = "extended"

    @classmethod
    def parse(cls, text: str | Session) -> Session:
        if isinstance(text, Session):
            return text
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise InvalidInputError(f"invalid session {text!r}: use regular or extended") from None


_JOB_ID_RE = re.compile(r"[0-9a-f]{12}")
_COMPOSITE_RE = re.compile(r"(?P<symbol>[^_\s]+)_(?P<day>\d{4}-\d{2}-\d{2})")
JOB_ID_RULE = "12 hex digits (a generated id) or SYMBOL_YYYY-MM-DD (the design's composite key)"


def _to_job_id(value: Any) -> str:
    if isinstance(value, IngestionJobId):
        return value.value
    text = str(value).strip()
    if _JOB_ID_RE.fullmatch(text.lower()):
        return text.lower()
    match = _COMPOSITE_RE.fullmatch(text)
    if match is not None:
        try:
            symbol = Symbol(match["symbol"])
            day = dt.date.fromisoformat(match["day"])
        except (InvalidInputError, ValueError):
            pass
        else:
            return f"{symbol.value}_{day.isoformat()}"
    raise InvalidInputError(f"invalid job id {value!r}: job ids are {JOB_ID_RULE}")


@attrs.frozen
class IngestionJobId:
    """Identity of an ingestion job: an opaque generated id (12 hex digits, short enough to
    type), or the design's composite key ``<SYMBOL>_<YYYY-MM-DD>`` (``AAPL_2024-01-02``), whose
    ``symbol`` and ``day`` are then known. Both are safe in a file name: a symbol cannot hold a
    path separator."""

    value: str = attrs.field(converter=_to_job_id)

    @classmethod
    def generate(cls) -> IngestionJobId:
        return cls(uuid.uuid4().hex[:12])

    @classmethod
    def for_symbol_day(cls, symbol: Symbol | str, day: dt.date | str) -> IngestionJobId:
        """The composite id of one symbol's day."""
        return cls(f"{Symbol(symbol).value}_{_to_date(day).isoformat()}")

    @property
    def is_composite(self) -> bool:
        return "_" in self.value

    @property
    def symbol(self) -> Symbol | None:
        """The symbol of a composite id; ``None`` for a generated one."""
        return Symbol(self.value.rsplit("_", 1)[0]) if self.is_composite else None

    @property
    def day(self) -> dt.date | None:
        """The day of a composite id; ``None`` for a generated one."""
        return dt.date.fromisoformat(self.value.rsplit("_", 1)[1]) if self.is_composite else None

    def __str__(self) -> str:
        return self.value


RAW = "raw"


def _timeframe(value: str | Timeframe) -> Timeframe:
    return Timeframe.parse(value)


@attrs.frozen(order=True)
class Series:
    """Where rows of one kind live: (provider, feed, adjustment, timeframe); the timeframe says
    the kind too (``trades``, ``quotes``: see :class:`Timeframe`).

    Settings that change the rows are part of a series, so two series never replace each other's
    rows: Alpaca's split-adjusted bars are not its raw bars, nor its trades its bars. Providers
    whose data is never adjusted write ``raw``.
    """

    provider: str
    feed: str
    adjustment: str
    # Series sort by timeframe length (an enum has no order of its own).
    timeframe: Timeframe = attrs.field(converter=_timeframe, order=lambda tf: tf.order)

    @property
    def kind(self) -> Kind:
        return self.timeframe.kind

    def __str__(self) -> str:
        return f"{self.provider}/{self.feed}/{self.adjustment}/{self.timeframe.value}"
