"""MarketPipe's IEX provider: bars from IEX HIST, the exchange's free daily packet captures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marketpipe.model.values import Timeframe
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import ProviderSpec, Setting

from marketpipe_iex.hist.index import PRODUCTION_URL
from marketpipe_iex.provider import IexHistProvider
from marketpipe_iex.ticks import IEX_RULES

__all__ = ["IexHistProvider", "marketpipe_providers"]


def _build(settings: Mapping[str, Any]) -> IexHistProvider:
    return IexHistProvider(**settings)


@hookimpl
def marketpipe_providers() -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name="iex",
            factory=_build,
            description="IEX HIST daily captures (free, no key): every trade, decoded into bars; "
            "the trades themselves and TOPS quote updates (--kind trades, quotes)",
            settings=(
                Setting("feed", "TOPS (default), DEEP or DPLS; with --source, what the files hold"),
                Setting("version", "feed version to pick from the index (default: the newest)"),
                Setting(
                    "source",
                    "local captures (a path, folder or glob) instead of downloading; --source",
                ),
                Setting(
                    "cache_dir",
                    "downloads and decoded days (default $MARKETPIPE_IEX_CACHE or "
                    "~/.cache/marketpipe/iex)",
                ),
                Setting("base_url", "HIST index base URL", default=PRODUCTION_URL),
                Setting("timeout", "read timeout per request, seconds", default="60"),
            ),
            timeframes=(*Timeframe.bars(), Timeframe.TRADES, Timeframe.QUOTES),
            trade_rules=IEX_RULES,
            deterministic=True,
            # A minute whose trades are all odd lots (or extended-hours trades inside the
            # regular session) has volume but sets no price: a bar with null prices.
            null_price_bars=True,
            max_days_per_unit=1,  # one capture per day
            # IEX trades a few percent of the market: many symbols have a bar in few minutes.
            thin_day_fraction=0.01,
        )
    ]
