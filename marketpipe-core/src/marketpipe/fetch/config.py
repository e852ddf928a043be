"""Client configuration and header authentication for HTTP connectors."""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Generator, Mapping

import attrs
import httpx

from marketpipe.model.errors import InvalidInputError
from marketpipe.model.secrets import Secret


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number of at least 1, got {value!r}")


#: How long one request may spend, retries and waits included, unless
#: ``MARKETPIPE_HTTP_RETRY_SECONDS`` says otherwise (for every HTTP connector at once).
MAX_TOTAL_SECONDS = 300.0
RETRY_SECONDS_ENV = "MARKETPIPE_HTTP_RETRY_SECONDS"


def seconds_from_env(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    """A positive, finite number of seconds from the environment variable ``name`` (``default``
    when unset); anything else is one line naming it."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:  # NaN fails this too
        raise InvalidInputError(f"{name} must be a positive number of seconds, got {raw!r}")
    return seconds


def retry_seconds() -> float:
    """``max_total_seconds``'s default: ``MARKETPIPE_HTTP_RETRY_SECONDS``, else 300 s. An
    unattended run that should give up on a server that is down sooner than five minutes a
    request sets it (a nightly run: the next night catches up)."""
    return seconds_from_env(RETRY_SECONDS_ENV, MAX_TOTAL_SECONDS)


def _url(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    """An http(s) URL with a host and a port that exists: a typo is one configuration error
    when the provider is built, never a failure of every request."""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises for a port outside 0..65535
    except ValueError as exc:
        raise InvalidInputError(f"{attribute.name} {value!r} is not a usable URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"{attribute.name} {value!r} is not a usable URL: use http(s)://host[:port][/path]"
        )


def _secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


@attrs.frozen(kw_only=True)
class ClientConfig:
    """How to reach an API. Every bound is explicit: a stalled, slow or hostile server never
    hangs a job or fills its memory.

    :param timeout: seconds a single read (or write) may wait.
    :param connect_timeout: seconds to connect.
    :param deadline: seconds one attempt may take from connect to the last body byte (a server
        trickling its answer a byte at a time is cut off here).
    :param max_attempts: tries per request, the first included.
    :param max_total_seconds: a request, retries and waits included, gives up within this; a
        server asking for a longer wait fails it at once (default: :func:`retry_seconds`).
    :param max_body_bytes: the largest body accepted, counted after decompression.
    :param max_pages: the most pages one paginated request may take.
    """

    base_url: str = attrs.field(validator=_url)
    api_key: Secret | None = attrs.field(default=None, converter=_secret)
    api_secret: Secret | None = attrs.field(default=None, converter=_secret)
    timeout: float = attrs.field(default=30.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    deadline: float = attrs.field(default=120.0, validator=_positive)
    max_attempts: int = attrs.field(default=6, validator=_count)
    max_total_seconds: float = attrs.field(factory=retry_seconds, validator=_positive)
    backoff_base: float = attrs.field(default=0.5, validator=_positive)
    backoff_cap: float = attrs.field(default=30.0, validator=_positive)
    max_body_bytes: int = attrs.field(default=64 * 2**20, validator=_count)
    max_pages: int = attrs.field(default=10_000, validator=_count)
    user_agent: str = "marketpipe"

    def httpx_timeout(self, within: float | None = None) -> httpx.Timeout:
        """httpx's timeouts, none longer than ``within`` seconds when given."""
        cap = float("inf") if within is None else max(0.001, within)
        return httpx.Timeout(min(self.timeout, cap), connect=min(self.connect_timeout, cap))


class HeaderTokenAuth(httpx.Auth):
    """Sends a key and a secret in two headers (``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``).

    The values stay wrapped in :class:`~marketpipe.model.secrets.Secret` until the request is sent.
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

    @property
    def complete(self) -> bool:
        return self._key is not None and self._secret is not None

    def filled(
        self, key: Secret | str | None = None, secret: Secret | str | None = None
    ) -> HeaderTokenAuth:
        """The same headers, with a missing key or secret taken from ``key`` and ``secret``
        (``HeaderTokenAuth("APCA-API-KEY-ID", "APCA-API-SECRET-KEY")`` names headers only)."""
        return HeaderTokenAuth(
            self.key_header,
            self.secret_header,
            self._key if self._key is not None else key,
            self._secret if self._secret is not None else secret,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._key is not None:
            request.headers[self.key_header] = self._key.get_secret_value()
        if self._secret is not None:
            request.headers[self.secret_header] = self._secret.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return f"HeaderTokenAuth({self.key_header!r}, {self.secret_header!r}, <redacted>)"


class ApiKeyAuth(httpx.Auth):
    """Sends one API key: as a bearer token (``Authorization: Bearer <key>``, the default), in
    a header of the API's own (``header="X-API-Key"``), or as a query parameter
    (``query="apiKey"``). The key stays wrapped in a :class:`Secret` until the request is sent;
    MarketPipe scrubs it from every message, a URL carrying it included."""

    def __init__(
        self, key: Secret | str, *, header: str | None = None, query: str | None = None
    ) -> None:
        if header and query:
            raise ValueError("ApiKeyAuth sends the key in a header or a query parameter, not both")
        self._key = _secret(key)
        self.header, self.query = header, query

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        assert self._key is not None
        value = self._key.get_secret_value()
        if self.query:
            request.url = request.url.copy_merge_params({self.query: value})
        elif self.header:
            request.headers[self.header] = value
        else:
            request.headers["Authorization"] = f"Bearer {value}"
        yield request

    def __repr__(self) -> str:
        where = (
            f"query={self.query!r}" if self.query else f"header={self.header or 'Authorization'!r}"
        )
        return f"ApiKeyAuth(<redacted>, {where})"
