"""Alpaca's trading API ``GET /v2/assets``: the instruments Alpaca lists, as MarketPipe's
canonical instruments.

The answer is one JSON array of assets (``id``, ``class``, ``exchange``, ``symbol``, ``name``,
``status``, ``tradable``...), without listing days. It lives on the trading API's host (live or
paper), not the market-data one: the provider's ``trading_url`` setting.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from marketpipe.fetch import HttpClient, MalformedResponseError

#: The paper-trading host: what every Alpaca account's keys reach (a live account's reach
#: ``https://api.alpaca.markets`` too).
TRADING_URL = "https://paper-api.alpaca.markets"


class TradingClient(HttpClient):
    provider_name = "alpaca"


def parse_assets(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedResponseError("alpaca sent assets that are not JSON") from None
    if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
        raise MalformedResponseError("alpaca sent assets that are not a list of objects")
    return data


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def asset_row(asset: dict[str, Any], fetched: dt.datetime) -> dict[str, Any]:
    return {
        "provider": "alpaca",
        "id": _text(asset.get("id")),
        "symbol": _text(asset.get("symbol")),
        "name": _text(asset.get("name")),
        "type": _text(asset.get("class")),
        "primary_exchange": _text(asset.get("exchange")),
        "active": asset.get("status") == "active",
        "fetched_at": fetched,
        "record": json.dumps(asset, sort_keys=True),
    }
