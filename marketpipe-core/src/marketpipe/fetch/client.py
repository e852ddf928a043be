"""``BaseApiClient``: httpx, sync and async, with retries around the whole request.

One attempt is: wait for the rate limiter, send, read the body, decode it. Any of these may fail
and be retried: 429 and 5xx answers, connect and read timeouts, resets, truncated or undecodable
bodies. Client errors (400, 401, 403, 404, 422) are never retried. Waits are capped exponential
backoff with full jitter, or what the server asked for, whichever is longer; attempts and total
time are bounded. Subclasses say what to request and how to decode it.

Nothing a server sends is trusted: an attempt has a deadline from connect to the last body byte
(``ClientConfig.deadline``, within the request's ``max_total_seconds``), a body is read as a
stream and refused past ``max_body_bytes`` decompressed bytes (a gzip bomb is caught while it
inflates), a wait the server asks for that is longer than the time left fails the request at
once, and a chain of pages is bounded (``max_pages``, the bars the request can hold, and at
most two empty pages in a row that still point to a next one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import httpx

from marketpipe.fetch import metrics
from marketpipe.fetch.body import BodyReader
from marketpipe.fetch.config import ClientConfig
from marketpipe.fetch.deadline import job_seconds_left
from marketpipe.fetch.errors import (
    AuthenticationError,
    ConnectorError,
    EntitlementError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    ResponseTooLargeError,
)
from marketpipe.fetch.rate_limiter import RateLimiter, Slot
from marketpipe.fetch.retry import backoff, retry_after, should_retry

log = logging.getLogger("marketpipe.connectors")

T = TypeVar("T")
Decoder = Callable[[bytes], T]


class _DeadlinePassed(Exception):
    """An attempt ran past its deadline (a server trickling its answer)."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(str(error))
        self.error = error


def _duration(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:,.1f} s"


def _buffered(response: httpx.Response, body: bytes) -> httpx.Response:
    """A read, decoded copy of a streamed answer, for error messages."""
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    }
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def settle(slot: Slot, response: httpx.Response | None, client: HttpClient) -> None:
    """Tell the rate limiter how ``slot``'s request was answered (a 429 with or without a hint
    of when to come back, see :class:`RateLimiter`); say so when it slowed down."""
    if response is None or response.status_code != 429:
        slot.done()
        return
    lowered = slot.done(rejected=True, hinted=retry_after(response.headers) is not None)
    if lowered is not None:
        limiter = client.rate_limiter
        log.warning(
            "%s answered 429 without saying when to retry: the job now sends at most %d "
            "requests per %gs (configured %d), raising it again slowly",
            client.provider_name,
            lowered,
            limiter.window_seconds,
            limiter.requests_per_window,
        )


@attrs.define
class _Budget:
    """One request's time: ``total`` seconds for its attempts and waits, restarted after each
    429 inside a job (whose deadline then bounds it); never past the job's deadline."""

    total: float
    started: float = attrs.field(factory=time.monotonic)
    failures: int = 0

    @property
    def in_job(self) -> bool:
        return job_seconds_left() is not None

    def left(self) -> float:
        own = self.total - (time.monotonic() - self.started)
        job = job_seconds_left()
        return own if job is None else min(own, job)

    def rate_left(self) -> float:
        job = job_seconds_left()
        return self.left() if job is None else job

    def failed(self, rate_limited: bool, wait: float) -> None:
        if not rate_limited:
            self.failures += 1
        elif self.in_job:
            self.started = time.monotonic() + wait


@attrs.frozen
class Retry:
    """One failed attempt that may be retried: why, and how long the server asked us to wait.
    An attempt given to :meth:`HttpClient.retrying` returns it instead of a result."""

    error: ConnectorError
    wait: float | None = None


class HttpClient:
    """An HTTP API reached through httpx, sync and async: timeouts, shared rate limiter, retries
    around send+read+decode (``request``), and the error each failed answer stands for."""

    provider_name = "api"
    #: Whether an async request decodes its answer in a thread, off the event loop: right for
    #: a decoder that is one call releasing the GIL (pyarrow's JSON reader), so other requests
    #: flow meanwhile. A decoder of many short numpy calls (``page_records``) says ``False``:
    #: in a thread it handed the GIL to and fro with the loop's thread, and took 0.9 us a
    #: trade where on the loop it takes 0.5.
    decode_in_thread = True

    def __init__(
        self,
        config: ClientConfig,
        auth: httpx.Auth | None = None,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.auth = auth
        self.rate_limiter = rate_limiter or RateLimiter(10_000, 60.0)
        self._transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        self.requests = 0
        self.retries = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.config.base_url!r})"

    def classify_error(self, response: httpx.Response) -> ConnectorError:
        """The error an unsuccessful answer stands for; subclasses recognise their API's cases."""
        text = error_message(response)
        if response.status_code == 401:
            return AuthenticationError(
                f"{self.provider_name} refused the credentials (HTTP 401): {text}; check the "
                "provider's key settings (mp providers lists them)"
            )
        if response.status_code == 403:
            return EntitlementError(
                f"{self.provider_name} refused access (HTTP 403): {text}; check the keys and "
                "what your plan includes"
            )
        if response.status_code == 429:
            return RateLimitedError(
                f"{self.provider_name} kept answering 429 (rate limited): "
                f"{text}; lower the rate_limit setting or retry later"
            )
        if response.status_code >= 500:
            return ProviderUnavailableError(
                f"{self.provider_name} answered HTTP {response.status_code}: {text}; "
                "it may be down, retry later"
            )
        return InvalidRequestError(
            f"{self.provider_name} refused the request (HTTP {response.status_code}): {text}"
        )

    # -- clients ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Accept-Encoding": "gzip", "User-Agent": self.config.user_agent}

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.config.base_url,
                auth=self.auth,
                headers=self._headers(),
                timeout=self.config.httpx_timeout(),
                transport=self._transport,
            )
        return self._client

    @property
    def async_client(self) -> httpx.AsyncClient:
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(
                base_url=self.config.base_url,
                auth=self.auth,
                headers=self._headers(),
                timeout=self.config.httpx_timeout(),
                transport=self._async_transport,
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            )
        return self._async_client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    # -- one request, retried -----------------------------------------------------------------

    def _attempt_outcome(
        self, response: httpx.Response | None, body: bytes, exc: Exception | None
    ) -> bytes | Retry:
        """The body of a successful answer, or why this attempt failed (raising if it is final)."""
        status = str(response.status_code) if response is not None else type(exc).__name__
        metrics.REQUESTS.labels(self.provider_name, status).inc()
        if response is not None:
            metrics.BYTES_DOWNLOADED.labels(self.provider_name).inc(response.num_bytes_downloaded)
            if response.status_code == 429:
                metrics.RATE_LIMITED.labels(self.provider_name).inc()
        if exc is not None:
            if isinstance(exc, _DeadlinePassed):
                return Retry(exc.error)
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
            return Retry(
                ProviderUnavailableError(
                    f"{self.provider_name} {kind} ({type(exc).__name__}); check the network or "
                    "base_url, or retry later"
                )
            )
        assert response is not None
        if response.status_code == 200:
            return body
        answer = _buffered(response, body)
        error = self.classify_error(answer)
        if not self.should_retry(response.status_code, body):
            raise error
        return Retry(error, retry_after(response.headers))

    @staticmethod
    def _decoded(decode: Decoder[T], body: bytes) -> T | Retry:
        try:
            return decode(body)
        except ResponseTooLargeError:
            raise
        except MalformedResponseError as malformed:
            return Retry(malformed)

    def _attempt_deadline(self, budget: _Budget) -> float:
        """When this attempt must have its last byte: its own deadline, within the request's
        and the job's."""
        return time.monotonic() + max(0.0, min(self.config.deadline, budget.left()))

    def _next_wait(self, outcome: Retry, budget: _Budget) -> float:
        """Seconds to wait before the next attempt; raises the last error when retries are spent
        or the server asks for a wait longer than the time left.

        A 429 is not a failed attempt: the server is up, and the rate limiter has learned to
        send slower (or the server said when to come back), so rate-limited requests are
        retried until the job's deadline (outside a job, the request's ``max_total_seconds``)."""
        rate_limited = isinstance(outcome.error, RateLimitedError)
        left = budget.rate_left() if rate_limited else budget.left()
        until = "the job's deadline" if rate_limited and budget.in_job else "this request"
        if outcome.wait is not None and outcome.wait > left:
            raise type(outcome.error)(
                f"{outcome.error}; the server asked to wait {_duration(outcome.wait)}, more than "
                f"the {_duration(max(0.0, left))} left for {until}"
            )
        if outcome.wait and rate_limited:
            self.rate_limiter.penalize(outcome.wait)
        wait = self._backoff(0 if rate_limited else budget.failures)
        if outcome.wait is not None:
            wait = max(wait, outcome.wait)
        if wait > left:
            if rate_limited:
                raise type(outcome.error)(
                    f"{outcome.error}; still rate limited when the time for {until} ran out"
                )
            raise outcome.error
        if not rate_limited and budget.failures + 1 >= self.config.max_attempts:
            raise outcome.error
        budget.failed(rate_limited, wait)
        self.retries += 1
        metrics.RETRIES.labels(self.provider_name).inc()
        # A 429 is the limiter's business (it says when it slows down); other failures are news.
        log.log(
            logging.DEBUG if rate_limited else logging.WARNING,
            "%s; retry %d in %.1fs",
            outcome.error,
            self.retries,
            wait,
        )
        return wait

    def _reader(self, response: httpx.Response) -> BodyReader:
        return BodyReader(response, self.config.max_body_bytes, self.provider_name)

    def _slow(self, deadline_seconds: float) -> _DeadlinePassed:
        return _DeadlinePassed(
            ProviderUnavailableError(
                f"{self.provider_name} did not finish its answer within "
                f"{_duration(deadline_seconds)} (deadline); it may be overloaded, retry later"
            )
        )

    def _get(
        self, path: str, params: dict[str, str], deadline: float
    ) -> tuple[httpx.Response, bytes]:
        """One GET, its body read as a stream: capped in size, bounded by ``deadline``."""
        allowed = deadline - time.monotonic()
        timeout = self.config.httpx_timeout(allowed)
        with self.client.stream("GET", path, params=params, timeout=timeout) as response:
            reader = self._reader(response)
            for chunk in response.iter_raw() if reader.raw else response.iter_bytes():
                reader.add(chunk)
                if time.monotonic() > deadline:
                    raise self._slow(allowed)
            return response, reader.body()

    async def _async_get(
        self, path: str, params: dict[str, str], deadline: float
    ) -> tuple[httpx.Response, bytes]:
        allowed = deadline - time.monotonic()
        timeout = self.config.httpx_timeout(allowed)
        try:
            async with asyncio.timeout(allowed):
                async with self.async_client.stream(
                    "GET", path, params=params, timeout=timeout
                ) as response:
                    reader = self._reader(response)
                    async for chunk in (
                        response.aiter_raw() if reader.raw else response.aiter_bytes()
                    ):
                        reader.add(chunk)
                    return response, reader.body()
        except TimeoutError:
            raise self._slow(allowed) from None

    def retrying(self, attempt: Callable[[float], T | Retry]) -> T:
        """The one retry policy around ``attempt(deadline)`` (a request, a download): its
        result, or, after each :class:`Retry`, the policy's wait (backoff with full jitter, or
        what the server asked, whichever is longer) and another attempt, until the attempts or
        the request's total time are spent (then the last error is raised; 429s are retried
        until the job's deadline, see :meth:`_next_wait`). ``deadline`` is
        when the attempt must have its last byte (``time.monotonic()`` seconds)."""
        return self._retrying(attempt, _Budget(self.config.max_total_seconds))

    def _retrying(self, attempt: Callable[[float], T | Retry], budget: _Budget) -> T:
        while True:
            outcome = attempt(self._attempt_deadline(budget))
            if not isinstance(outcome, Retry):
                return outcome
            time.sleep(self._next_wait(outcome, budget))

    async def async_retrying(self, attempt: Callable[[float], Awaitable[T | Retry]]) -> T:
        """:meth:`retrying` on the event loop."""
        return await self._async_retrying(attempt, _Budget(self.config.max_total_seconds))

    async def _async_retrying(
        self, attempt: Callable[[float], Awaitable[T | Retry]], budget: _Budget
    ) -> T:
        while True:
            outcome = await attempt(self._attempt_deadline(budget))
            if not isinstance(outcome, Retry):
                return outcome
            await asyncio.sleep(self._next_wait(outcome, budget))

    def _after_slot(self, budget: _Budget, asked: float) -> float:
        """The attempt's deadline once the rate limiter granted its slot (asked for at
        ``asked``): the wait for a slot is the job's (its deadline bounds it), never the
        request's own time limit."""
        budget.started += time.monotonic() - asked
        return self._attempt_deadline(budget)

    def request(self, path: str, params: dict[str, str], decode: Decoder[T]) -> T:
        budget = _Budget(self.config.max_total_seconds)

        def attempt(_deadline: float) -> T | Retry:
            asked = time.monotonic()
            slot = self.rate_limiter.acquire_slot()
            deadline = self._after_slot(budget, asked)
            self.requests += 1
            response: httpx.Response | None = None
            body = b""
            failure: Exception | None = None
            try:
                response, body = self._get(path, params, deadline)
            except (httpx.TransportError, _DeadlinePassed) as exc:  # timeouts, resets, trickles
                failure = exc
            finally:
                settle(slot, response, self)
            got = self._attempt_outcome(response, body, failure)
            return got if isinstance(got, Retry) else self._decoded(decode, got)

        return self._retrying(attempt, budget)

    async def async_request(self, path: str, params: dict[str, str], decode: Decoder[T]) -> T:
        budget = _Budget(self.config.max_total_seconds)

        async def attempt(_deadline: float) -> T | Retry:
            asked = time.monotonic()
            slot = await self.rate_limiter.async_acquire_slot()
            deadline = self._after_slot(budget, asked)
            self.requests += 1
            response: httpx.Response | None = None
            body = b""
            failure: Exception | None = None
            try:
                response, body = await self._async_get(path, params, deadline)
            except (httpx.TransportError, _DeadlinePassed) as exc:
                failure = exc
            finally:
                settle(slot, response, self)
            got = self._attempt_outcome(response, body, failure)
            if isinstance(got, Retry):
                return got
            if self.decode_in_thread:  # off the event loop, other requests flow meanwhile
                return await asyncio.to_thread(self._decoded, decode, got)
            return self._decoded(decode, got)

        return await self._async_retrying(attempt, budget)

    # -- policy -------------------------------------------------------------------------------

    def should_retry(self, status: int, body: bytes = b"") -> bool:
        return should_retry(status, body)

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.config.backoff_base, self.config.backoff_cap)


def error_message(response: httpx.Response) -> str:
    """The API's message from a JSON error body, else the start of the text body."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:200] if text else "(empty body)"
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:200]
    return str(data)[:200]
