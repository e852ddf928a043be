"""MarketPipe's Alpaca provider: Market Data API v2 historical stock bars, trades and quotes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from marketpipe.model.values import Timeframe
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import ProviderSpec, Setting

from marketpipe_alpaca.assets import TRADING_URL
from marketpipe_alpaca.client import PRODUCTION_URL, AlpacaClient
from marketpipe_alpaca.provider import AlpacaMarketDataAdapter

__all__ = ["AlpacaClient", "AlpacaMarketDataAdapter", "marketpipe_providers"]


def _build(settings: Mapping[str, Any]) -> AlpacaMarketDataAdapter:
    return AlpacaMarketDataAdapter(**settings)


@hookimpl
def marketpipe_providers() -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name="alpaca",
            factory=_build,
            description="Alpaca Market Data API v2 stock bars, trades and quotes (free plan: IEX "
            "feed, 200 req/min)",
            settings=(
                Setting(
                    "api_key_id",
                    "Alpaca API key id",
                    secret=True,
                    required=True,
                    env=("APCA_API_KEY_ID",),
                ),
                Setting(
                    "api_secret_key",
                    "Alpaca API secret key",
                    secret=True,
                    required=True,
                    env=("APCA_API_SECRET_KEY",),
                ),
                Setting(
                    "base_url",
                    "API base URL (production, sandbox or a local server)",
                    default=PRODUCTION_URL,
                ),
                Setting(
                    "feed",
                    "iex (free plan), sip, delayed_sip, otc, boats, overnight",
                    default="iex",
                ),
                Setting(
                    "adjustment",
                    "raw, split, dividend, spin-off or all (comma-combinable)",
                    default="raw",
                ),
                Setting(
                    "trading_url",
                    "trading API base URL, for the list of assets (--all-symbols, mp symbols)",
                    default=TRADING_URL,
                ),
                Setting("rate_limit", "requests per minute (200 on the free plan)", default="200"),
                Setting("rate_limit_window", "seconds the rate limit counts over", default="60"),
                Setting("timeout", "read timeout per request, seconds", default="30"),
                Setting(
                    "quote_sizes",
                    "what a quote's sizes count: shares, or lots (round lots of 100, converted "
                    "to shares)",
                    default="shares",
                ),
            ),
            timeframes=(*Timeframe.bars(), Timeframe.TRADES, Timeframe.QUOTES),
            # Bars exist only for minutes with trades; prices are never null.
            null_price_bars=False,
            max_symbols_per_unit=100,  # keeps the symbols parameter a sane URL length
            # Adjusted and raw bars are different series (adjustment=raw|split|...).
            series_settings=("adjustment",),
            # The free plan cannot query the last 15 minutes of SIP data: a session's bars are
            # final 15 minutes after its close.
            data_delay=dt.timedelta(minutes=15),
            # Bars only for minutes with trades; the free plan's IEX feed misses many minutes.
            thin_day_fraction=0.05,
        )
    ]
