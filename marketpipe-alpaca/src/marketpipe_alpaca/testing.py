"""``FakeAlpacaServer``: a real HTTP server on 127.0.0.1 that behaves like Alpaca's bars,
trades, quotes and corporate-actions endpoints.

For tests and benchmarks (yours too): auth headers, the single- and multi-symbol endpoints,
``limit`` counted across symbols, ``page_token`` pagination, results sorted by symbol then time,
minutes without trades missing, ``feed=sip`` refused for the last 15 minutes, a requests-per-window
limit answered with 429 (with ``X-RateLimit-*`` hints, or bare: ``hints=False``), an outage
(``down``: every connection dropped), and injectable faults (429, 500, 503, connection resets, truncated bodies,
slow answers). Bars are deterministic: the same request always gets the same bars, whatever
the faults (``seed`` drives only which requests fail). Corporate actions given to the server
shape its bars, its ``adjustment`` parameter and ``/v1/corporate-actions``, as of its ``today``
(:mod:`marketpipe_alpaca.fake_market`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.calendar import NEW_YORK, nyse_calendar
from marketpipe.model.values import TimeRange

from marketpipe_alpaca.fake_http import GzipCache, handler_class
from marketpipe_alpaca.fake_market import (
    FakeMarket,
    assets_answer,
    corporate_actions,
    day_bars,
    default_assets,
    encode_bars,
    page_offset,
    parse_time,
)
from marketpipe_alpaca.fake_ticks import answer_ticks

FAULTS = ("429", "500", "503", "reset", "truncated", "slow")
_TIMEFRAMES = {"1Min": 1, "5Min": 5, "15Min": 15, "30Min": 30, "1Hour": 60, "1Day": 1440}
_ALLOWED = {
    "timeframe",
    "start",
    "end",
    "limit",
    "page_token",
    "feed",
    "adjustment",
    "sort",
    "asof",
    "currency",
    "symbols",
}
_ADJUSTMENTS = {"raw", "split", "dividend", "spin-off", "all"}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (killed, timed out) is part of the tests."""
        return


class FakeAlpacaServer:
    """Start with ``with FakeAlpacaServer() as server:``; point clients at ``server.url``."""

    def __init__(
        self,
        key_id: str = "test-key-id",
        secret_key: str = "test-secret-key",
        *,
        rate_limit: int | None = None,
        window_seconds: float = 60.0,
        hints: bool = True,
        fault_rate: float = 0.0,
        faults: Iterable[str] = FAULTS,
        slow_seconds: float = 0.3,
        sip_delay_minutes: float = 15.0,
        seed: int = 0,
        port: int = 0,
        actions: Sequence[Mapping[str, Any]] = (),
        today: dt.date | None = None,
        echo_headers: bool = False,
        canceled_every: int = 0,
        corrected_every: int = 0,
        crossed_every: int = 0,
        empty_tail: bool = False,
        page_cap: int | None = None,
    ) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        #: Trades and quotes (:func:`~marketpipe_alpaca.fake_ticks.tick_rows`): which trades
        #: are canceled or corrected, which quotes crossed, and whether a full last page
        #: points to an empty one.
        self.canceled_every, self.corrected_every = canceled_every, corrected_every
        self.crossed_every, self.empty_tail = crossed_every, empty_tail
        #: At most this many ticks a page, whatever ``limit`` asks (``None``: ``limit``).
        self.page_cap = page_cap
        #: ``GET /v2/assets`` (the trading API's list of instruments): what it answers.
        self.assets: list[dict[str, Any]] = default_assets()
        self.rate_limit, self.window_seconds = rate_limit, window_seconds
        #: Whether a 429 over the limit says when to come back (``X-RateLimit-*``); without,
        #: it is a bare 429, as a gateway or a key shared with others answers.
        self.hints = hints
        #: While set, every request's connection is dropped unanswered (an outage).
        self.down = False
        self.fault_rate, self.faults = fault_rate, tuple(faults)
        #: A 500 or 503 fault's body echoes the request's headers, keys included (as some
        #: gateways and debug pages do).
        self.echo_headers = echo_headers
        self.slow_seconds, self.seed = slow_seconds, seed
        self.sip_delay = dt.timedelta(minutes=sip_delay_minutes)
        self.stats: Counter[str] = Counter()
        #: The market's corporate actions (Alpaca-shaped records, each with its ``type`` key).
        self.market = FakeMarket(actions)
        #: The server's current day: actions processed after it are unknown, and it has no bars
        #: after it. ``None``: every action is known and every day has bars.
        self.today = today
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque()
        #: When each request arrived (``time.monotonic``), in order, to measure pacing.
        self.arrival_times: list[float] = []
        self._cache: OrderedDict[tuple[Any, ...], tuple[pa.Array, pa.Array]] = OrderedDict()
        self._ticks_cache: OrderedDict[tuple[Any, ...], list[tuple[str, str]]] = OrderedDict()
        self.gzip = GzipCache()
        self._server = _QuietServer(("127.0.0.1", port), handler_class(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._held_after: int | None = None
        self._bars_answered = 0
        self._released = threading.Event()

    def hold_bars(self, after: int) -> None:
        """Answer ``after`` more bar requests, then hold the next ones until :meth:`release`
        (a test looks at a job caught in the middle)."""
        with self._lock:
            self._held_after, self._bars_answered = after, 0
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _wait_if_held(self) -> None:
        with self._lock:
            if self._held_after is None:
                return
            self._bars_answered += 1
            held = self._bars_answered > self._held_after
        if held:
            self._released.wait(120)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def start(self) -> FakeAlpacaServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAlpacaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ----------------------------------------------------------------------------

    def _over_limit(self) -> float | None:
        """Seconds until a slot frees when over the limit, else None (and count this request)."""
        with self._lock:
            now = time.monotonic()
            self.arrival_times.append(now)
            if self.rate_limit is None:
                return None
            while self._arrivals and self._arrivals[0] <= now - self.window_seconds:
                self._arrivals.popleft()
            if len(self._arrivals) >= self.rate_limit:
                return self._arrivals[0] + self.window_seconds - now
            self._arrivals.append(now)
            return None

    def _pick_fault(self) -> str | None:
        with self._lock:
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(self.faults)
        return None

    def _rows(
        self,
        symbols: list[str],
        timeframe: str,
        start: dt.datetime,
        end: dt.datetime,
        adjustment: str = "raw",
    ) -> tuple[pa.Array, pa.Array]:
        """(symbol per bar, JSON per bar), sorted by symbol then time, cached per query."""
        kinds = set(adjustment.split(","))
        if "all" in kinds:
            kinds = {"split", "dividend"}
        key = (tuple(symbols), timeframe, start, end, frozenset(kinds), self.today)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        minutes = _TIMEFRAMES[timeframe]
        first = start.astimezone(NEW_YORK).date()
        last = end.astimezone(NEW_YORK).date()
        if self.today is not None:
            last = min(last, self.today)
        days = nyse_calendar().sessions(TimeRange(first, last)) if first <= last else []
        lo, hi = int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9
        names: list[pa.Array] = []
        encoded: list[pa.Array] = []
        for symbol in sorted(set(symbols)):
            table = self.symbol_bars(symbol, days, minutes, kinds)
            if table is None:
                continue
            table = table.filter(
                pc.and_(pc.greater_equal(table["t"], lo), pc.less_equal(table["t"], hi))
            )
            table = table.set_column(
                0, "t", pa.array(table["t"]).cast(pa.timestamp("ns", tz="UTC"))
            )
            encoded.append(encode_bars(table))
            names.append(pa.array([symbol] * table.num_rows, pa.string()))
        result = (
            (pa.concat_arrays(names), pa.concat_arrays(encoded))
            if names
            else (pa.array([], pa.string()), pa.array([], pa.string()))
        )
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return result

    def symbol_bars(
        self, symbol: str, days: list[dt.date], minutes: int, kinds: set[str]
    ) -> pa.Table | None:
        """A symbol's bars on ``days``: its company's walk, scaled by the splits after each day
        (raw), then adjusted for the actions known by ``today`` that ``kinds`` asks for."""
        market = self.market
        days = [d for d in days if market.trades_on(symbol, d, self.today)]
        if not days:
            return None
        company = market.company(symbol)
        per_day = [day_bars(company, d, minutes) for d in days]
        counts = np.array([len(p["t"]) for p in per_day])
        cols = {k: np.concatenate([p[k] for p in per_day]) for k in per_day[0]}
        price = np.repeat(market.raw_scale(company, days), counts)
        volume = np.ones(len(price))
        if market.rows and kinds - {"raw", "spin-off"}:

            def close_before(ex: dt.date) -> float | None:
                previous = nyse_calendar().sessions(TimeRange(ex - dt.timedelta(days=10), ex))
                before = [d for d in previous if d < ex]
                if not before:
                    return None
                daily = day_bars(company, before[-1], 1440)
                if not len(daily["c"]):
                    return None
                scale = market.raw_scale(company, [before[-1]])[0]
                return float(daily["c"][-1] * scale)

            adj_price, adj_volume = market.factors(company, days, kinds, self.today, close_before)
            price = price * np.repeat(adj_price, counts)
            volume = np.repeat(adj_volume, counts)
        for name in ("o", "h", "l", "c", "vw"):
            cols[name] = cols[name] * price
        # Raw volume is whole shares; an adjusted one is derived from it, as prices are.
        raw_volume = np.rint(cols["v"] / np.repeat(market.raw_scale(company, days), counts))
        cols["v"] = np.rint(raw_volume * volume).astype(np.int64)
        return pa.table(cols)

    def answer(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one request (faults aside)."""

        def error(
            status: int, message: str, code: int | None = None
        ) -> tuple[int, dict[str, str], bytes]:
            body: dict[str, Any] = {"message": message}
            if code is not None:
                body["code"] = code
            return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

        if (
            headers.get("apca-api-key-id") != self.key_id
            or headers.get("apca-api-secret-key") != self.secret_key
        ):
            return error(403, "forbidden")
        if path.rstrip("/") == "/v1/corporate-actions":
            return corporate_actions(self.market, query, self.today, error)
        if path.rstrip("/") == "/v2/assets":  # the trading API's, served on the same port
            listed = json.dumps(assets_answer(self.assets, query)).encode()
            return 200, {"Content-Type": "application/json"}, listed
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "stocks"] and len(parts) == 3 and parts[2] in ("trades", "quotes"):
            return answer_ticks(self, parts[2], {k: v[-1] for k, v in query.items()}, error)
        if parts[:2] != ["v2", "stocks"] or parts[-1] != "bars" or len(parts) not in (3, 4):
            return error(404, "Not Found")
        single = len(parts) == 4
        params = {k: v[-1] for k, v in query.items()}
        allowed = _ALLOWED - {"symbols"} if single else _ALLOWED
        unexpected = sorted(set(params) - allowed)
        if unexpected:
            return error(400, f"unexpected parameter(s): {', '.join(unexpected)}", 40010000)
        adjustment = params.get("adjustment", "raw").split(",")
        if not all(a in _ADJUSTMENTS for a in adjustment) or len(set(adjustment)) < len(adjustment):
            return error(400, "invalid adjustment", 40010000)
        if params.get("timeframe") not in _TIMEFRAMES:
            return error(422, "invalid timeframe", 42210000)
        try:
            start = parse_time(params["start"])
            end = parse_time(params.get("end") or dt.datetime.now(dt.UTC).isoformat())
        except (KeyError, ValueError):
            return error(422, "invalid start or end", 42210000)
        try:
            limit = int(params.get("limit", "1000"))
            assert 1 <= limit <= 10_000
        except (ValueError, AssertionError):
            return error(422, "invalid limit", 42210000)
        if params.get("feed", "sip") == "sip" and end > dt.datetime.now(dt.UTC) - self.sip_delay:
            return error(403, "subscription does not permit querying recent SIP data", 42210000)
        symbols = (
            [unquote(parts[2])]
            if single
            else [s for s in params.get("symbols", "").split(",") if s]
        )
        if not symbols:
            return error(422, "missing symbols", 42210000)
        names, bars = self._rows(symbols, params["timeframe"], start, end, ",".join(adjustment))
        offset = page_offset(params.get("page_token"))
        if offset is None:
            return error(422, "invalid page_token", 42210000)
        page_names, page_bars = names[offset : offset + limit], bars[offset : offset + limit]
        more = offset + limit < len(bars)
        token = (
            json.dumps(base64.b64encode(f"{symbols[0]}|{offset + limit}".encode()).decode())
            if more
            else "null"
        )
        if single:
            joined = pc.binary_join(pa.array([page_bars], pa.list_(pa.string())), ",")[0].as_py()
            bars_json = f"[{joined}]" if len(page_bars) else "null"
            body = f'{{"bars":{bars_json},"symbol":"{symbols[0]}","next_page_token":{token}}}'
        else:
            groups = []
            if len(page_names):
                runs = pc.run_end_encode(page_names)
                ends = runs.run_ends.to_pylist()
                labels = runs.values.to_pylist()
                begin = 0
                for label, stop in zip(labels, ends, strict=True):
                    chunk = pc.binary_join(
                        pa.array([page_bars[begin:stop]], pa.list_(pa.string())), ","
                    )
                    groups.append(f'"{label}":[{chunk[0].as_py()}]')
                    begin = stop
            body = f'{{"bars":{{{",".join(groups)}}},"next_page_token":{token}}}'
        return 200, {"Content-Type": "application/json"}, body.encode()


def main() -> None:
    """``python -m marketpipe_alpaca.testing [--rate-limit N] [--window S] [--fault-rate F]``:
    serve until killed, after printing the URL on the first line."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--key-id", default="test-key-id")
    parser.add_argument("--secret-key", default="test-secret-key")
    parser.add_argument("--rate-limit", type=int, default=None)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--bare-429", action="store_true", help="429s over the limit say nothing")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = FakeAlpacaServer(
        args.key_id,
        args.secret_key,
        rate_limit=args.rate_limit,
        window_seconds=args.window,
        fault_rate=args.fault_rate,
        port=args.port,
        hints=not args.bare_429,
    )
    print(server.url, flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
