"""Massive's REST API, as far as MarketPipe uses it: corporate actions, ticker events (renames)
and the tickers list, through the core HTTP toolkit (timeouts, retries, limits, typed errors).

Pages chain by ``next_url``, which carries a ``cursor`` and never the key: the same path is
asked again with the next URL's query (and the key in the header), and a next URL that points
anywhere else is refused rather than sent the key.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
from marketpipe.fetch import (
    ApiKeyAuth,
    AuthenticationError,
    ClientConfig,
    ConnectorError,
    EntitlementError,
    HttpClient,
    InvalidRequestError,
    MalformedResponseError,
)
from marketpipe.fetch.client import error_message
from marketpipe.model.secrets import Secret


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedResponseError("massive sent an answer that is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedResponseError("massive sent an answer that is not a JSON object")
    return data


def _page(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    data = _object(body)
    results = data.get("results") or []
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise MalformedResponseError("massive sent results that are not a list of objects")
    following = data.get("next_url")
    if following is not None and not isinstance(following, str):
        raise MalformedResponseError("massive sent a next_url that is not text")
    return results, following


class NotFoundError(InvalidRequestError):
    """HTTP 404: Massive does not know the thing asked for."""


class MassiveApi(HttpClient):
    provider_name = "massive"

    def __init__(self, base_url: str, api_key: Secret | str | None, timeout: float) -> None:
        if not api_key:
            raise AuthenticationError(
                "massive: corporate actions and reference data need the REST api_key: set "
                "MARKETPIPE_MASSIVE_API_KEY (or -o api_key=...)"
            )
        super().__init__(ClientConfig(base_url=base_url, timeout=timeout), auth=ApiKeyAuth(api_key))
        self._origin = urllib.parse.urlsplit(self.config.base_url)[:2]

    def classify_error(self, response: httpx.Response) -> ConnectorError:
        text = error_message(response)
        if response.status_code == 401:
            return AuthenticationError(
                f"massive refused the REST api_key (HTTP 401): {text}; set "
                "MARKETPIPE_MASSIVE_API_KEY to the key from the Massive dashboard"
            )
        if response.status_code == 403:
            return EntitlementError(f"massive: your plan does not include this (HTTP 403): {text}")
        if response.status_code == 404:
            return NotFoundError(f"massive does not know it (HTTP 404): {text}")
        return super().classify_error(response)

    def pages(self, path: str, params: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
        """Each page of ``path``'s results, following ``next_url``."""
        seen: set[str] = set()
        for _ in range(self.config.max_pages):
            results, following = self.request(path, params, _page)
            yield results
            if not following:
                return
            parts = urllib.parse.urlsplit(following)
            if parts[:2] != self._origin or parts.path != path:
                raise MalformedResponseError(
                    f"massive sent a next_url elsewhere ({parts.scheme}://{parts.netloc}"
                    f"{parts.path}); not following it with the key"
                )
            if parts.query in seen:
                raise MalformedResponseError("massive sent the same next_url twice; stopping")
            seen.add(parts.query)
            params = dict(urllib.parse.parse_qsl(parts.query))
        raise MalformedResponseError(f"massive kept paging {path} past {self.config.max_pages}")

    def every(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        return [row for page in self.pages(path, params) for row in page]

    def ticker_events(self, ticker: str) -> dict[str, Any] | None:
        """The ticker-change history of the company ``ticker`` names now or named once;
        ``None`` when Massive does not know it."""
        path = f"/vX/reference/tickers/{urllib.parse.quote(ticker, safe='')}/events"
        try:
            data = self.request(path, {"types": "ticker_change"}, _object)
        except NotFoundError:
            return None
        results = data.get("results")
        return results if isinstance(results, dict) else None
