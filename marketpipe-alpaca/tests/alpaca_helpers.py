"""Builders for Alpaca-shaped JSON bodies."""

from __future__ import annotations

from typing import Any

BASE = "https://data.example.test"
KEY, SECRET = "PKTESTKEY0001", "SECRETVALUE0001"


def bar(
    t: str,
    o: float = 10.0,
    h: float = 11.0,
    low: float = 9.5,
    c: float = 10.5,
    v: int = 100,
    n: int = 3,
    vw: float = 10.2,
) -> dict[str, Any]:
    return {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw}


def page(
    bars: list[dict[str, Any]], symbol: str = "AAPL", token: str | None = None
) -> dict[str, Any]:
    return {"bars": bars, "symbol": symbol, "next_page_token": token}
