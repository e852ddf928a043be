"""MarketPipe's Fake provider: deterministic random-walk bars, no key, no network."""

from __future__ import annotations

from marketpipe.model.values import Timeframe
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import ProviderSpec, Setting

from marketpipe_fake.provider import FakeProvider

__all__ = ["FakeProvider", "marketpipe_providers"]


@hookimpl
def marketpipe_providers() -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name="fake",
            factory=lambda settings: FakeProvider(**settings),
            description="Deterministic random-walk bars, and the trades and quotes beneath them, "
            "for testing and demos (no key, no network)",
            settings=(
                Setting("seed", "seed of the simulated market", default="0"),
                Setting("bad_row_rate", "fraction of rows corrupted on purpose", default="0"),
            ),
            timeframes=(*Timeframe.bars(), Timeframe.TRADES, Timeframe.QUOTES),
            deterministic=True,
            series_settings=("seed",),  # another seed is another market
        )
    ]
