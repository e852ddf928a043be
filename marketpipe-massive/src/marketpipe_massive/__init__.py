"""MarketPipe's Massive provider: the whole US stock market from Massive's daily flat files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import ProviderSpec, Setting

from marketpipe_massive.provider import API_URL, FLATFILES_URL, MassiveProvider

__all__ = ["MassiveProvider", "marketpipe_providers"]


def _build(settings: Mapping[str, Any]) -> MassiveProvider:
    return MassiveProvider(**settings)


@hookimpl
def marketpipe_providers() -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name="massive",
            factory=_build,
            description="Massive (ex-Polygon.io) flat files: every US stock's 1m or 1d bars, "
            "trades or quotes a day",
            settings=(
                Setting("api_key", "REST API key (reference data, corporate actions)", secret=True),
                Setting(
                    "s3_access_key_id",
                    "flat-file S3 access key id (Massive dashboard; not the REST key)",
                    secret=True,
                ),
                Setting("s3_secret_access_key", "flat-file S3 secret access key", secret=True),
                Setting("flatfiles_url", "flat-file S3 endpoint", default=FLATFILES_URL),
                Setting("bucket", "flat-file bucket", default="flatfiles"),
                Setting("base_url", "REST API base URL", default=API_URL),
                Setting("timeout", "read timeout per request, seconds", default="60"),
                Setting(
                    "quote_sizes",
                    "what the quotes files' sizes count: lots (round lots of 100, converted to "
                    "shares) or shares",
                    default="lots",
                ),
            ),
            timeframes=("1m", "1d", "trades", "quotes"),
            deterministic=True,
            max_days_per_unit=1,  # one file a day, shared by the day's units
            day_files=True,  # on a cluster, a day's units run on one worker
            # A whole market's thin names trade in few minutes of a session: a day's minute file
            # holds about a third of its tickers' minutes, and units of --batch-size rows take
            # three times the tickers (a third of the files, commits and catalog rows a day).
            thin_day_fraction=0.01,
            fill=0.3,
        )
    ]
