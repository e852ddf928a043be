"""Massive on 127.0.0.1: a deterministic market written as flat files, served as S3 serves them."""

from marketpipe_massive.testing.market import (
    UNIVERSE,
    Listing,
    csv_gz,
    day_bars,
    minute_bars,
    publish_market,
    publish_reference,
    quotes_of,
    trades_of,
)
from marketpipe_massive.testing.server import (
    ACCESS_KEY_ID,
    API_KEY,
    SECRET_ACCESS_KEY,
    MassiveServer,
    massive_server,
)

__all__ = [
    "ACCESS_KEY_ID",
    "API_KEY",
    "SECRET_ACCESS_KEY",
    "UNIVERSE",
    "Listing",
    "MassiveServer",
    "csv_gz",
    "day_bars",
    "massive_server",
    "minute_bars",
    "publish_market",
    "publish_reference",
    "quotes_of",
    "trades_of",
]
