"""The local Alpaca server's market: its deterministic bars (:func:`day_bars`), corporate actions,
and the bars they shape.

A test gives :class:`~marketpipe_alpaca.testing.FakeAlpacaServer` records shaped as Alpaca sends
them, each with its ``type`` key (``{"type": "forward_splits", "id": ..., "symbol": "NVDA",
"old_rate": 1, "new_rate": 10, "ex_date": "2024-07-15", "process_date": "2024-07-05"}``), and
moves the server's ``today`` forward. Then, as on Alpaca:

- raw bars obey every split (before a 10-for-1 split a share costs ten times as much; volume the
  other way), known or not: they are what traded;
- ``/v1/corporate-actions`` answers the records processed by ``today``;
- bars with ``adjustment=split|dividend|all`` are adjusted for the actions known and in effect
  (processed, and their ex-date come) by ``today``:
  before an ex-date, a split multiplies prices by ``old/new`` and volume by ``new/old``, a stock
  dividend by ``1/(1+rate)`` and ``1+rate``, a cash dividend prices by ``1 - rate/C`` with ``C``
  the raw close of the session before the ex-date;
- a renamed company trades under its old name before the rename day and its new one from then
  on; asking for the new name returns the old name's bars too, labelled with the new name, once
  the rename is known (Alpaca's ``asof`` mapping).

This arithmetic is written here on its own, per session day, so tests compare MarketPipe's
adjustments (:mod:`marketpipe.dataset.adjust`) with an independent computation.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.calendar import ny_midnight_ns

from marketpipe_alpaca.actions import TYPES, parse_record

_SPLIT_KINDS = {"forward_split", "reverse_split", "stock_dividend"}


class FakeMarket:
    """Corporate actions (Alpaca-shaped records with a ``type`` key) and what they do to bars."""

    def __init__(self, records: Sequence[Mapping[str, Any]] = ()) -> None:
        self.records = [dict(r) for r in records]
        self.rows = []
        for record in self.records:
            body = {k: v for k, v in record.items() if k != "type"}
            row = parse_record(str(record["type"]), body)
            row["type"] = record["type"]
            self.rows.append(row)

    def known(self, today: dt.date | None) -> list[dict[str, Any]]:
        """The rows processed by ``today`` (all of them when there is no today)."""
        return [
            r
            for r in self.rows
            if today is None or (r["process_date"] is not None and r["process_date"] <= today)
        ]

    def _renames(self, today: dt.date | None = None) -> list[dict[str, Any]]:
        return [r for r in self.known(today) if r["kind"] == "name_change"]

    def company(self, symbol: str) -> str:
        """The company's first name (its bars' random walk keeps it through renames)."""
        seen = {symbol}
        while True:
            old = [r["symbol"] for r in self._renames() if r["new_symbol"] == symbol]
            if not old or old[0] in seen:
                return symbol
            symbol = old[0]
            seen.add(symbol)

    def names(self, company: str) -> set[str]:
        out = {company}
        for _ in range(len(self.rows) + 1):
            more = {r["new_symbol"] for r in self._renames() if r["symbol"] in out}
            if more <= out:
                break
            out |= more
        return out

    def trades_on(self, symbol: str, day: dt.date, today: dt.date | None) -> bool:
        """Whether bars asked for under ``symbol`` exist on ``day``: not after the symbol was
        renamed away; under a new name before its rename only once the rename is known."""
        for r in self._renames():
            if r["symbol"] == symbol and day >= r["ex_date"]:
                return False
            if r["new_symbol"] == symbol and day < r["ex_date"]:
                known = today is None or r["process_date"] <= today
                if not known:
                    return False
        return True

    def _actions(self, company: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = self.names(company)
        return [r for r in rows if r["symbol"] in names and r["ex_date"] is not None]

    def raw_scale(self, company: str, days: Sequence[dt.date]) -> np.ndarray:
        """Each day's raw price multiplier: the ratio of every split after it (volume divides)."""
        scale = np.ones(len(days))
        for r in self._actions(company, self.rows):
            ratio = _split_ratio(r)
            if ratio is not None:
                scale *= np.where([d < r["ex_date"] for d in days], ratio, 1.0)
        return scale

    def factors(
        self,
        company: str,
        days: Sequence[dt.date],
        kinds: set[str],
        today: dt.date | None,
        close_before: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per day: (price factor, volume factor) of the actions of ``kinds`` known by
        ``today``. ``close_before(ex_date)`` is the raw close of the session before."""
        price = np.ones(len(days))
        volume = np.ones(len(days))
        for r in self._actions(company, self.known(today)):
            if today is not None and r["ex_date"] > today:
                continue  # announced, not yet in effect: nobody adjusts for it yet
            before = np.array([d < r["ex_date"] for d in days], dtype=bool)
            if r["kind"] in _SPLIT_KINDS and "split" in kinds:
                ratio = _split_ratio(r)
                assert ratio is not None
                price = np.where(before, price / ratio, price)
                volume = np.where(before, volume * ratio, volume)
            elif r["kind"] == "cash_dividend" and "dividend" in kinds:
                close = close_before(r["ex_date"])
                if close:
                    price = np.where(before, price * (1 - r["rate"] / close), price)
        return price, volume


def _split_ratio(row: Mapping[str, Any]) -> float | None:
    """How many shares one becomes (``new/old``; ``1+rate`` for a stock dividend)."""
    if row["kind"] in ("forward_split", "reverse_split"):
        return float(row["new_rate"]) / float(row["old_rate"])
    if row["kind"] == "stock_dividend":
        return 1.0 + float(row["rate"])
    return None


_ACTION_PARAMS = {
    "symbols",
    "cusips",
    "types",
    "start",
    "end",
    "ids",
    "limit",
    "page_token",
    "sort",
}


def corporate_actions(
    market: FakeMarket, query: dict[str, list[str]], today: dt.date | None, error: Any
) -> tuple[int, dict[str, str], bytes]:
    """``/v1/corporate-actions``: the records processed by ``today``, filtered by symbols,
    types and the day range (on the ex-date, else the effective or process date), in
    process-date order, ``limit`` a page, grouped by type."""
    params = {k: v[-1] for k, v in query.items()}
    unexpected = sorted(set(params) - _ACTION_PARAMS)
    if unexpected:
        return error(400, f"unexpected parameter(s): {', '.join(unexpected)}", 40010000)  # type: ignore[no-any-return]
    today = today or dt.datetime.now(dt.UTC).date()
    try:
        start = dt.date.fromisoformat(params.get("start") or today.isoformat())
        end = dt.date.fromisoformat(params.get("end") or today.isoformat())
        limit = int(params.get("limit", "100"))
        offset = (
            int(base64.b64decode(params["page_token"]).decode()) if params.get("page_token") else 0
        )
    except ValueError:
        return error(422, "invalid start, end, limit or page_token", 42210000)  # type: ignore[no-any-return]
    if not 1 <= limit <= 1000:
        return error(422, "invalid limit", 42210000)  # type: ignore[no-any-return]
    symbols = {s for s in params.get("symbols", "").split(",") if s}
    types = {t for t in params.get("types", "").split(",") if t}
    kinds = {TYPES.get(t, t) for t in types}
    rows = []
    for row, record in zip(market.rows, market.records, strict=True):
        names = {row["symbol"], row["new_symbol"]}
        if row["process_date"] is None or row["process_date"] > today:
            continue
        if symbols and not names & symbols:
            continue
        if types and row["kind"] not in kinds and record["type"] not in types:
            continue
        if row["ex_date"] is None or not start <= row["ex_date"] <= end:
            continue
        rows.append((row["process_date"], record))
    rows.sort(key=lambda r: r[0], reverse=params.get("sort") == "desc")
    page = rows[offset : offset + limit]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for _, record in page:
        body = {k: v for k, v in record.items() if k != "type"}
        grouped.setdefault(str(record["type"]), []).append(body)
    token = (
        base64.b64encode(str(offset + limit).encode()).decode()
        if offset + limit < len(rows)
        else None
    )
    body_json = json.dumps({"corporate_actions": grouped, "next_page_token": token})
    return 200, {"Content-Type": "application/json"}, body_json.encode()


_MINUTE = 60 * 1_000_000_000
_FIRST = 4 * 60  # 04:00 New York
_COUNT = 16 * 60  # to 20:00


def day_bars(symbol: str, day: dt.date, minutes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One symbol-day of bars at ``minutes`` resolution; minutes without trades have no bar."""
    digest = hashlib.blake2b(f"{seed}|{symbol}|{day}".encode(), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    base = (
        20
        + int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=2).digest(), "little") % 400
    )
    steps = rng.normal(0, 0.0008, _COUNT)
    close = np.round(base * np.exp(np.cumsum(steps)), 2)
    open_ = np.concatenate(([round(float(base), 2)], close[:-1]))
    high = np.round(np.maximum(open_, close) + np.abs(rng.normal(0, 0.02, _COUNT)), 2)
    low = np.round(np.minimum(open_, close) - np.abs(rng.normal(0, 0.02, _COUNT)), 2)
    volume = rng.integers(100, 5000, _COUNT)
    trades = np.maximum(1, volume // 100)
    vwap = np.round((high + low + close) / 3, 4)
    minute = np.arange(_COUNT)
    regular = (minute >= 330) & (minute < 720)
    traded = rng.random(_COUNT) < np.where(regular, 0.97, 0.3)
    if minutes == 1440:
        traded &= regular
    midnight = ny_midnight_ns(day)
    ts = midnight + (_FIRST + minute) * _MINUTE
    cols = {
        "t": ts,
        "o": open_,
        "h": high,
        "l": low,
        "c": close,
        "v": volume,
        "n": trades,
        "vw": vwap,
    }
    cols = {k: v[traded] for k, v in cols.items()}
    if minutes == 1 or not len(cols["t"]):
        return cols
    span = minutes * _MINUTE
    bucket = midnight + (cols["t"] - midnight) // span * span
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(bucket)])) - 1
    vol = np.add.reduceat(cols["v"], starts)
    return {
        "t": bucket[starts],
        "o": cols["o"][starts],
        "h": np.maximum.reduceat(cols["h"], starts),
        "l": np.minimum.reduceat(cols["l"], starts),
        "c": cols["c"][ends],
        "v": vol,
        "n": np.add.reduceat(cols["n"], starts),
        "vw": np.round(np.add.reduceat(cols["vw"] * cols["v"], starts) / vol, 4),
    }


def encode_bars(table: pa.Table) -> pa.Array:
    """One JSON object string per bar, built in Arrow."""
    if table.num_rows == 0:
        return pa.array([], pa.string())
    stamps = pc.strftime(table["t"].cast(pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    parts: list[Any] = ['{"t":"', stamps, '"']
    for key in ("o", "h", "l", "c", "v", "n", "vw"):
        parts += [f',"{key}":', pc.cast(table[key], pa.string())]
    parts.append("}")
    pieces = [p if not isinstance(p, str) else pa.scalar(p) for p in parts]
    return pc.binary_join_element_wise(*pieces, "").combine_chunks()


def _asset(symbol: str, name: str, status: str) -> dict[str, Any]:
    """One asset as the trading API's ``/v2/assets`` answers it (its documented fields)."""
    import uuid

    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-asset:{symbol}")),
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": symbol,
        "name": name,
        "status": status,
        "tradable": status == "active",
        "marginable": True,
        "shortable": True,
        "easy_to_borrow": True,
        "fractionable": True,
        "attributes": [],
    }


def default_assets() -> list[dict[str, Any]]:
    """The local server's assets: three active, one inactive (no day says when it left)."""
    return [
        _asset(symbol, name, status)
        for symbol, name, status in (
            ("AAPL", "Apple Inc. Common Stock", "active"),
            ("MSFT", "Microsoft Corporation Common Stock", "active"),
            ("NVDA", "NVIDIA Corporation Common Stock", "active"),
            ("GONE", "Gone Corp. Common Stock", "inactive"),
        )
    ]


def assets_answer(
    assets: Sequence[Mapping[str, Any]], query: Mapping[str, list[str]]
) -> list[Mapping[str, Any]]:
    """``/v2/assets`` filtered by its ``status`` (default active) and ``asset_class``."""
    status = (query.get("status") or ["active"])[-1]
    kind = (query.get("asset_class") or ["us_equity"])[-1]
    return [a for a in assets if a["class"] == kind and status in ("all", a["status"])]


def page_offset(token: str | None) -> int | None:
    """The row a page token points to (``None``: not a token this server gave)."""
    if not token:
        return 0
    try:
        return int(base64.b64decode(token).decode().split("|")[1])
    except (ValueError, IndexError):
        return None


def parse_time(text: str) -> dt.datetime:
    """A query's ``start`` or ``end``: a day (its UTC midnight) or an RFC 3339 moment."""
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(text)
    return moment
