"""The HIST index: which capture files exist for a day, where to download them, how big they are.

``GET {base}/hist`` answers a map of ``YYYYMMDD`` to file lists; ``GET {base}/hist?date=YYYYMMDD``
answers that day's list (both shapes are accepted from either). ``size`` comes as a string or an
integer. Requests go through the core connector toolkit: timeouts, retries with backoff.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import attrs
from marketpipe.fetch import MalformedResponseError
from marketpipe.fetch.client import HttpClient

PRODUCTION_URL = "https://iextrading.com/api/1.0"
FEEDS = ("TOPS", "DEEP", "DPLS")
_VERSION = re.compile(r"\d{1,4}(\.\d{1,4}){0,3}")
#: Protocol names as IEX lists them (``IEXTP1``): letters and digits only, since they become
#: part of a cache file's name. Nothing from the network reaches a path unchecked.
_PROTOCOL = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}")


@attrs.frozen
class HistFile:
    """One capture listed by the index."""

    day: dt.date
    feed: str
    version: str
    protocol: str
    link: str
    size: int

    @property
    def trade_layout(self) -> int:
        """Trade report length: TOPS 1.5 had 4 reserved bytes more."""
        return 42 if (self.feed, self.version) == ("TOPS", "1.5") else 38

    @property
    def file_name(self) -> str:
        return f"{self.day:%Y%m%d}_{self.protocol}_{self.feed}{self.version}.pcap.gz"

    @property
    def label(self) -> str:
        return f"{self.day} {self.feed} {self.version}"


def _entry(raw: Any) -> HistFile | None:
    if not isinstance(raw, dict):
        raise MalformedResponseError(f"IEX HIST index entry is not an object: {str(raw)[:80]}")
    try:
        day = dt.datetime.strptime(str(raw["date"]), "%Y%m%d").date()
        size = int(raw["size"])
        feed = str(raw["feed"]).upper()
        version = str(raw["version"])
        link = str(raw["link"])
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedResponseError(
            f"IEX HIST index entry lacks a valid {exc} ({str(raw)[:80]})"
        ) from None
    protocol = str(raw.get("protocol", "IEXTP1"))
    if feed not in FEEDS and feed.isalnum():
        return None  # a feed MarketPipe does not read (IEX may add some): not ours to fetch
    if (
        feed not in FEEDS
        or not _VERSION.fullmatch(version)
        or not _PROTOCOL.fullmatch(protocol)
        or size < 0
        or not link.startswith(("http://", "https://"))
    ):
        raise MalformedResponseError(f"IEX HIST index entry is malformed: {str(raw)[:120]!r}")
    return HistFile(day, feed, version, protocol, link, size)


def parse_index(body: bytes) -> list[HistFile]:
    """Every entry of an index answer, in either shape."""
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedResponseError(f"IEX HIST index is not JSON: {body[:60]!r}") from None
    if isinstance(data, dict):
        items = [
            item
            for value in data.values()
            for item in (value if isinstance(value, list) else [value])
        ]
    elif isinstance(data, list):
        items = data
    else:
        raise MalformedResponseError(f"IEX HIST index is neither a list nor a map: {body[:60]!r}")
    return [entry for item in items if (entry := _entry(item)) is not None]


def pick(files: list[HistFile], day: dt.date, feed: str, version: str | None) -> HistFile | None:
    """The file of ``day`` for ``feed`` (and ``version``, else the newest version listed)."""
    matches = [
        f
        for f in files
        if f.day == day and f.feed == feed and (version is None or f.version == version)
    ]
    if not matches:
        return None
    return max(matches, key=lambda f: tuple(int(p) for p in f.version.split(".")))


class HistIndexClient(HttpClient):
    provider_name = "iex"

    def files(self, day: dt.date) -> list[HistFile]:
        """The index's entries for ``day`` (an empty list: IEX has no file for that day)."""
        return self.request("hist", {"date": f"{day:%Y%m%d}"}, parse_index)

    def all_files(self) -> list[HistFile]:
        """Every entry of the whole index (large: one entry per file of every day)."""
        return self.request("hist", {}, parse_index)
