"""Massive's flat files: one gzipped CSV per trading day under ``us_stocks_sip/<dataset>/``,
on an S3-compatible endpoint, reached with obstore.

Which days exist comes from listing each month's prefix (one LIST a month, never a GET per day);
a file is read as a stream of decompressed bytes (a GET read in chunks, inflated as they come),
never kept whole in memory or on disk.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import threading
from collections.abc import Iterator
from typing import Any

import attrs
from marketpipe.fetch.errors import AuthenticationError, ProviderUnavailableError
from marketpipe.fetch.inflate import inflate_module
from marketpipe.model.errors import DataUnavailableError, InvalidInputError
from marketpipe.model.secrets import Secret

PREFIX = "us_stocks_sip"
#: What a 403 on a file can mean; Massive's answer never says which.
FORBIDDEN = (
    "403: outside your plan or its history, not published yet, or the flat-file agreements "
    "are not signed in the dashboard"
)
#: A CSV compresses about 5 to 10 times; past this a file is refused as a decompression bomb.
MAX_RATIO = 64
CHUNK = 4 * 1024 * 1024
#: Inflated bytes made at a time.
OUT = 4 * 1024 * 1024


@attrs.frozen
class DayFile:
    """A day's file as the listing shows it."""

    day: dt.date
    key: str
    size: int
    etag: str

    @property
    def version(self) -> str:
        """What says the file changed: its ETag and size."""
        return f"{self.etag.strip(chr(34))} {self.size}"


def month_prefix(dataset: str, day: dt.date) -> str:
    return f"{PREFIX}/{dataset}/{day:%Y}/{day:%m}/"


def day_key(dataset: str, day: dt.date) -> str:
    return f"{month_prefix(dataset, day)}{day:%Y-%m-%d}.csv.gz"


def _plain(value: Secret | str) -> str:
    return value.get_secret_value() if isinstance(value, Secret) else value


_ZLIB = inflate_module()


class FlatFiles:
    """Listings and streamed reads of one bucket. Thread-safe: units of one job share it."""

    def __init__(
        self,
        url: str,
        bucket: str,
        access_key_id: Secret | str | None,
        secret_access_key: Secret | str | None,
        timeout: float = 60.0,
    ) -> None:
        from obstore.store import S3Store

        if not access_key_id or not secret_access_key:
            raise AuthenticationError(
                "massive: flat files need the S3 keys from the Massive dashboard: set "
                "MARKETPIPE_MASSIVE_S3_ACCESS_KEY_ID and MARKETPIPE_MASSIVE_S3_SECRET_ACCESS_KEY "
                "(the REST api_key is not accepted there)"
            )
        url = url.rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise InvalidInputError(f"massive: flatfiles_url must be an http(s) URL, got {url!r}")
        self.url = url
        self.bucket = bucket
        options: dict[str, Any] = {"timeout": f"{int(timeout)}s", "connect_timeout": "10s"}
        if url.startswith("http://"):
            options["allow_http"] = True
        self._store = S3Store(
            bucket,
            config={
                "endpoint": url,
                "access_key_id": _plain(access_key_id),
                "secret_access_key": _plain(secret_access_key),
                "region": "us-east-1",
                "virtual_hosted_style_request": False,
            },  # type: ignore[arg-type]
            client_options=options,  # type: ignore[arg-type]
            retry_config={"max_retries": 5, "retry_timeout": dt.timedelta(seconds=300)},  # type: ignore[arg-type]
        )
        self._months: dict[str, dict[dt.date, DayFile]] = {}
        self._listing: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FlatFiles({self.url}/{self.bucket})"

    def _fail(self, what: str, exc: Exception) -> Exception:
        text = str(exc)
        if "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
            return AuthenticationError(
                f"massive: the flat-file endpoint refused the S3 keys ({what}); use the S3 "
                "access key and secret from the Massive dashboard"
            )
        if _status(exc, 403, "PermissionDenied") or "AccessDenied" in text:
            return DataUnavailableError(f"massive: {what}: {FORBIDDEN}")
        first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
        return ProviderUnavailableError(f"massive: {what} failed: {first}")

    def month(self, dataset: str, day: dt.date, *, fresh: bool = False) -> dict[dt.date, DayFile]:
        """The day files listed under ``day``'s month (one LIST, kept for the provider's life
        unless ``fresh``)."""

        prefix = month_prefix(dataset, day)
        with self._lock:
            if not fresh and prefix in self._months:
                return self._months[prefix]
            listing = self._listing.setdefault(prefix, threading.Lock())
        with listing:  # units of one month wait for one LIST rather than each making one
            with self._lock:
                if not fresh and prefix in self._months:
                    return self._months[prefix]
            return self._list(prefix, dataset)

    def _list(self, prefix: str, dataset: str) -> dict[dt.date, DayFile]:
        import obstore

        try:
            found = obstore.list_with_delimiter(self._store, prefix)
        except Exception as exc:
            raise self._fail(f"listing {prefix}", exc) from None
        days: dict[dt.date, DayFile] = {}
        for meta in found["objects"]:
            key = str(meta["path"])
            name = key.rsplit("/", 1)[-1]
            if not name.endswith(".csv.gz"):
                continue
            try:
                listed_day = dt.date.fromisoformat(name[: -len(".csv.gz")])
            except ValueError:
                continue  # not a day file: the name never becomes a path, it is only compared
            if key != day_key(dataset, listed_day):
                continue
            days[listed_day] = DayFile(
                listed_day, key, int(meta["size"]), str(meta.get("e_tag") or "")
            )
        with self._lock:
            self._months[prefix] = days
        return days

    def day_file(self, dataset: str, day: dt.date, label: str) -> DayFile:
        """The listed file of ``day``, or :class:`DataUnavailableError` naming it."""
        found = self.month(dataset, day).get(day)
        if found is None:
            raise DataUnavailableError(
                f"massive: the {label} file of {day} is not published (not listed under "
                f"{month_prefix(dataset, day)}; Massive publishes a day by about 11:00 New York "
                "the next day)"
            )
        return found

    def open(self, file: DayFile) -> io.RawIOBase:
        """The file's decompressed bytes as a stream, read from the network as they are
        consumed; the GET is conditional on the listed ETag, so a file replaced since the
        listing is refused rather than mixed."""
        import obstore

        options: dict[str, Any] = {"if_match": file.etag} if file.etag else {}
        try:
            result = obstore.get(self._store, file.key, options=options)  # type: ignore[arg-type]
        except Exception as exc:
            if _status(exc, 412, "Precondition"):
                raise DataUnavailableError(
                    f"massive: {file.key} was replaced while being read; run again"
                ) from None
            raise self._fail(f"reading {file.key}", exc) from None
        return _Inflating(iter(result.stream(min_chunk_size=CHUNK)), file, self._fail)


def _status(exc: Exception, code: int, kind: str) -> bool:
    """``exc`` is obstore's error of that kind, or says the server answered ``code``. Not a
    search for the digits alone: an error's text holds its port and its duration ("in
    412.5µs"), and a 403 was once reported as a file replaced while being read."""
    if kind in type(exc).__name__:
        return True
    return (
        re.search(rf"status code: {code}\b|\b{code} (Forbidden|Precondition Failed)", str(exc))
        is not None
    )


class _Inflating(io.RawIOBase):
    """The gunzipped bytes of a chunk stream (every gzip member), refusing a truncated stream
    and one that inflates past :data:`MAX_RATIO` times its size. At most :data:`OUT` bytes are
    inflated at a time, and handed out without copies of what is left."""

    def __init__(self, chunks: Iterator[Any], file: DayFile, fail: Any) -> None:
        self._chunks = chunks
        self._file = file
        self._fail = fail
        self._inflate = _ZLIB.decompressobj(16 + _ZLIB.MAX_WBITS)
        self._pending = b""  # compressed input not inflated yet
        self._out = memoryview(b"")
        self._done = False
        self._limit = max(file.size, 1) * MAX_RATIO + CHUNK
        self._total = 0
        self._in_member = False
        self.compressed = 0

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes | None:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return None
        except Exception as exc:
            raise self._fail(f"reading {self._file.key}", exc) from None
        data = bytes(chunk)
        self.compressed += len(data)
        return data

    def _fill(self) -> None:
        while not self._out and not self._done:
            data = self._pending or self._next_chunk()
            self._pending = b""
            if data is None:
                if self._in_member or self._total == 0:
                    raise DataUnavailableError(
                        f"massive: {self._file.key} ends inside its gzip stream (truncated "
                        f"after {self.compressed:,} of {self._file.size:,} bytes); the day is "
                        "refused and fetched again by the next run"
                    )
                self._done = True
                return
            self._in_member = True
            try:
                out = self._inflate.decompress(data, OUT)
            except _ZLIB.error as exc:
                raise DataUnavailableError(
                    f"massive: {self._file.key} is not a valid gzip file ({exc}); the day is "
                    "refused and fetched again by the next run"
                ) from None
            if self._inflate.eof:  # a member ends; what follows starts the next one
                self._pending = self._inflate.unused_data
                self._inflate = _ZLIB.decompressobj(16 + _ZLIB.MAX_WBITS)
                self._in_member = False
            else:
                self._pending = self._inflate.unconsumed_tail
            self._total += len(out)
            if self._total > self._limit:
                raise DataUnavailableError(
                    f"massive: {self._file.key} inflates past {MAX_RATIO} times its size; refused"
                )
            self._out = memoryview(out)

    def readinto(self, buffer: Any) -> int:
        self._fill()
        n = min(len(buffer), len(self._out))
        if n:
            buffer[:n] = self._out[:n]
            self._out = self._out[n:]
        return n
