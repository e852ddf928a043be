"""Client configuration and header authentication for HTTP connectors."""

from __future__ import annotations

from collections.abc import Generator

import attrs
import httpx

from marketpipe.secrets import Secret


def _secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


@attrs.frozen(kw_only=True)
class ClientConfig:
    """How to reach an API. Timeouts are explicit: a stalled server never hangs a job.

    :param max_attempts: tries per request, the first included.
    :param max_total_seconds: a request gives up once its retries would pass this budget.
    """

    base_url: str
    api_key: Secret | None = attrs.field(default=None, converter=_secret)
    api_secret: Secret | None = attrs.field(default=None, converter=_secret)
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_attempts: int = 6
    max_total_seconds: float = 300.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    user_agent: str = "marketpipe"

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)


class HeaderTokenAuth(httpx.Auth):
    """Sends a key and a secret in two headers (``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``).

    The values stay wrapped in :class:`~marketpipe.secrets.Secret` until the request is sent.
    """

    def __init__(
        self,
        key_header: str,
        secret_header: str,
        key: Secret | str | None = None,
        secret: Secret | str | None = None,
    ) -> None:
        self.key_header = key_header
        self.secret_header = secret_header
        self._key = _secret(key)
        self._secret = _secret(secret)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._key is not None:
            request.headers[self.key_header] = self._key.get_secret_value()
        if self._secret is not None:
            request.headers[self.secret_header] = self._secret.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return f"HeaderTokenAuth({self.key_header!r}, {self.secret_header!r}, <redacted>)"
