"""A third-party provider in one module: hourly bars of a constant price, keyed by a secret."""

import numpy as np
from marketpipe.plugins import IMarketDataProvider, ProviderSpec, Setting, bars_batch, hookimpl

HOUR = 3600 * 10**9


class HelloProvider(IMarketDataProvider):
    feed = "hello"

    def __init__(self, api_token, price="42"):
        self.api_token = api_token  # a marketpipe.model.secrets.Secret
        self.price = float(price)

    def fetch(self, request):
        for symbol in request.symbols:
            for window in request.windows:
                first = window.midnight_ns + (window.start_ns - window.midnight_ns) // HOUR * HOUR
                ts = np.arange(first, window.end_ns, HOUR, dtype=np.int64)
                price = np.full(len(ts), self.price)
                yield bars_batch(
                    symbol.value,
                    ts,
                    price,
                    price,
                    price,
                    price,
                    np.full(len(ts), 100, dtype=np.int64),
                )


@hookimpl
def marketpipe_providers():
    return [
        ProviderSpec(
            name="hello",
            factory=lambda settings: HelloProvider(**settings),
            description="Hello bars from a third-party plugin",
            settings=(
                Setting("api_token", "hello API token", secret=True, required=True),
                Setting("price", "the constant price", default="42"),
            ),
            timeframes=("1h",),
            deterministic=True,
        )
    ]
