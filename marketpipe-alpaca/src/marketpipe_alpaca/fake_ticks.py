"""The local Alpaca server's trades and quotes (``/v2/stocks/trades``, ``/v2/stocks/quotes``):
deterministic ticks made from its one-minute bars, paged as Alpaca pages them, with the faults
a tick client must survive (canceled and corrected trades, crossed quotes, a page cap, an empty
last page). Used by :class:`~marketpipe_alpaca.testing.FakeAlpacaServer`."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from marketpipe.model.calendar import NEW_YORK, nyse_calendar
from marketpipe.model.values import TimeRange

from marketpipe_alpaca.fake_market import page_offset, parse_time

if TYPE_CHECKING:
    from marketpipe_alpaca.testing import FakeAlpacaServer

#: The query parameters the tick endpoints take.
TICK_PARAMS = {"start", "end", "limit", "page_token", "feed", "sort", "asof", "currency", "symbols"}


def rfc3339_ns(ns: int) -> str:
    """``2024-03-04T14:30:00.000000789Z``: RFC 3339 with nanoseconds, as Alpaca sends ticks."""
    seconds, fraction = divmod(ns, 10**9)
    whole = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:09d}Z"


def ns_of(row: str) -> int:
    """The stamp of a tick's JSON object (its ``t``, the first field), in nanoseconds."""
    text = row[6 : row.index('"', 6)]
    whole, fraction = text.rstrip("Z").split(".")
    moment = dt.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * 10**9 + int(fraction)


def tick_rows(server: FakeAlpacaServer, kind: str, symbol: str, day: dt.date) -> list[str]:
    """One symbol-day's trades (or quotes) as Alpaca's JSON objects, in time order: four a
    minute of its 1-minute bars (open, high, low, close), sizes sharing the bar's volume,
    at 0, 15, 30 and 45.000000789 seconds (nanoseconds survive). Every
    ``canceled_every``-th trade is sent with ``"u":"canceled"``, every
    ``corrected_every``-th with ``"u":"corrected"`` (0: none). A quote precedes each trade
    by a nanosecond, a cent either side of its price; every ``crossed_every``-th is
    crossed."""
    if not server.market.trades_on(symbol, day, server.today):
        return []
    bars = server.symbol_bars(symbol, [day], 1, {"raw"})
    if bars is None:
        return []
    rows: list[str] = []
    stamps = bars["t"].to_pylist()
    prices = [bars[c].to_pylist() for c in ("o", "h", "l", "c")]
    volumes = bars["v"].to_pylist()
    n = 0
    for at, volume, *four in zip(stamps, volumes, *prices, strict=True):
        share, rest = divmod(max(int(volume), 4), 4)
        for i, price in enumerate(four):
            n += 1
            ns = at + (i * 15_000_000_000 if i < 3 else 45_000_000_789)
            when = rfc3339_ns(ns - (1 if kind == "quotes" else 0))
            size = share + (1 if i < rest else 0)
            price = round(float(price), 2)
            if kind == "trades":
                update = ""
                if server.canceled_every and n % server.canceled_every == 0:
                    update = ',"u":"canceled"'
                elif server.corrected_every and n % server.corrected_every == 0:
                    update = ',"u":"corrected"'
                rows.append(
                    f'{{"t":"{when}","x":"V","p":{price},"s":{size},"c":["@"],'
                    f'"i":{n},"z":"C"{update}}}'
                )
            else:
                bid, ask = round(price - 0.01, 2), round(price + 0.01, 2)
                if server.crossed_every and n % server.crossed_every == 0:
                    bid, ask = ask, bid
                rows.append(
                    f'{{"t":"{when}","bx":"V","bp":{bid},"bs":1,"ax":"V","ap":{ask},'
                    f'"as":2,"c":["R"],"z":"C"}}'
                )
    return rows


def answer_ticks(
    server: FakeAlpacaServer,
    kind: str,
    params: dict[str, str],
    error: Callable[..., tuple[int, dict[str, str], bytes]],
) -> tuple[int, dict[str, str], bytes]:
    """``/v2/stocks/trades`` and ``/v2/stocks/quotes``: multi-symbol, ``limit`` counted
    across symbols (at most ``page_cap``), ordered by symbol then time, paged; with
    ``empty_tail`` the last page is an empty one that the last page with rows pointed
    to."""
    unexpected = sorted(set(params) - TICK_PARAMS)
    if unexpected:
        return error(400, f"unexpected parameter(s): {', '.join(unexpected)}", 40010000)
    try:
        start = parse_time(params["start"])
        end = parse_time(params.get("end") or dt.datetime.now(dt.UTC).isoformat())
        limit = int(params.get("limit", "1000"))
        assert 1 <= limit <= 10_000
    except (KeyError, ValueError, AssertionError):
        return error(422, "invalid start, end or limit", 42210000)
    symbols = sorted({s for s in params.get("symbols", "").split(",") if s})
    if not symbols:
        return error(422, "missing symbols", 42210000)
    lo, hi = int(start.timestamp() * 10**6) * 1000, int(end.timestamp() * 10**6) * 1000
    key = ("ticks", kind, tuple(symbols), lo, hi, server.today)
    with server._lock:
        cached = server._ticks_cache.get(key)
    if cached is None:
        first, last = start.astimezone(NEW_YORK).date(), end.astimezone(NEW_YORK).date()
        days = nyse_calendar().sessions(TimeRange(first, last)) if first <= last else []
        cached = [
            (symbol, row)
            for symbol in symbols
            for day in days
            for row in tick_rows(server, kind, symbol, day)
            if lo <= ns_of(row) <= hi
        ]
        with server._lock:
            server._ticks_cache[key] = cached
            while len(server._ticks_cache) > 64:
                server._ticks_cache.popitem(last=False)
    offset = page_offset(params.get("page_token"))
    if offset is None:
        return error(422, "invalid page_token", 42210000)
    limit = min(limit, server.page_cap or limit)
    page = cached[offset : offset + limit]
    # An empty tail: the last page with rows still points to one, which holds none.
    more = offset + limit < len(cached) or (server.empty_tail and bool(page))
    token = (
        json.dumps(base64.b64encode(f"{kind}|{offset + limit}".encode()).decode())
        if more
        else "null"
    )
    groups: dict[str, list[str]] = {}
    for symbol, row in page:
        groups.setdefault(symbol, []).append(row)
    inner = ",".join(f'"{s}":[{",".join(rows)}]' for s, rows in groups.items())
    server.stats[f"{kind}_pages"] += 1
    body = f'{{"{kind}":{{{inner}}},"next_page_token":{token}}}'
    return 200, {"Content-Type": "application/json"}, body.encode()
