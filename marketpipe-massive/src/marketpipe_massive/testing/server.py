"""``MassiveServer``: Massive's flat files and REST API on 127.0.0.1, for offline tests and docs.

The flat files are served the way S3 serves them, to any S3 client (obstore, boto3, the AWS
CLI): ``ListObjectsV2`` (prefix, delimiter, continuation), ``GetObject`` (with ``Range`` and
``If-Match``) and ``HeadObject``, path-style, with ETag, size and last-modified. The request's
access key (from its SigV4 ``Authorization`` header) must be the server's; the signature itself is
not checked. This is not moto: the tests need what moto cannot do, a per-object ``403`` (a day
outside the plan), a file republished under a new ETag between two runs, and a count of every
LIST and GET, and it starts in milliseconds.

The REST endpoints MarketPipe uses are served from :attr:`MassiveServer.splits`,
:attr:`~MassiveServer.dividends`, :attr:`~MassiveServer.events` and
:attr:`~MassiveServer.tickers` (``publish_reference`` fills them from a universe): the key
checked as Massive checks it (``Authorization: Bearer`` or ``apiKey=``), filters by ticker and
date, pages of ``limit`` results chained by ``next_url`` (which, as Massive's, carries no key).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

import attrs

ACCESS_KEY_ID = "MASSIVE-S3-KEY-ID-TEST"
SECRET_ACCESS_KEY = "massive-s3-secret-0123456789abcdef"
API_KEY = "massive-rest-key-0123456789abcdef"
BUCKET = "flatfiles"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


@attrs.define
class StoredObject:
    body: bytes
    etag: str
    modified: dt.datetime


@attrs.frozen
class Request:
    method: str
    path: str
    query: dict[str, str]

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and self.query.get("list-type") == "2"


class MassiveServer:
    """Flat files under bucket ``flatfiles`` and (later) the REST endpoints, on one port."""

    def __init__(self, port: int = 0) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.forbidden: set[str] = set()
        self.requests: list[Request] = []
        self.splits: list[dict[str, Any]] = []
        self.dividends: list[dict[str, Any]] = []
        #: ticker -> the ticker-events answer's ``results`` (``name``, ``events``).
        self.events: dict[str, dict[str, Any]] = {}
        self.tickers: list[dict[str, Any]] = []
        #: The most results a page holds whatever ``limit`` asks (to make answers page).
        self.page_limit = 5000
        self._lock = threading.Lock()
        self._clock = dt.datetime(2024, 4, 1, 12, tzinfo=dt.UTC)
        self._server = _Server(("127.0.0.1", port), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def settings(self) -> dict[str, str]:
        """The provider settings that point ``massive`` here."""
        return {
            "flatfiles_url": self.url,
            "base_url": self.url,
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
            "api_key": API_KEY,
        }

    def env(self) -> dict[str, str]:
        """The same settings as ``MARKETPIPE_MASSIVE_*`` variables, for ``mp`` run as a user."""
        return {f"MARKETPIPE_MASSIVE_{k.upper()}": v for k, v in self.settings().items()}

    # -- content ---------------------------------------------------------------------------------

    def publish(self, key: str, body: bytes) -> str:
        """Put (or replace) ``key``; returns its new ETag. Each publication is a second later."""
        with self._lock:
            self._clock += dt.timedelta(seconds=1)
            etag = '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'
            self.objects[key] = StoredObject(body, etag, self._clock)
            return etag

    def withdraw(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def forbid(self, key: str) -> None:
        """Answer ``403 AccessDenied`` for ``key`` as Massive does outside a plan's history."""
        with self._lock:
            self.forbidden.add(key)

    def gets(self) -> list[str]:
        """The keys of every object GET so far, in order."""
        with self._lock:
            return [
                r.path.split("/", 2)[2]
                for r in self.requests
                if r.method == "GET" and not r.is_list and r.path.startswith(f"/{BUCKET}/")
            ]

    def lists(self) -> list[str]:
        """The prefix of every listing so far, in order."""
        with self._lock:
            return [r.query.get("prefix", "") for r in self.requests if r.is_list]

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> MassiveServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MassiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- S3 --------------------------------------------------------------------------------------

    def _list(self, query: dict[str, str]) -> tuple[int, bytes]:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        after = query.get("continuation-token") or query.get("start-after") or ""
        limit = max(1, min(int(query.get("max-keys", "1000")), 1000))
        with self._lock:
            keys = sorted(k for k in self.objects if k.startswith(prefix) and k > after)
            contents: list[tuple[str, StoredObject]] = []
            prefixes: list[str] = []
            last = ""
            for key in keys:
                rest = key[len(prefix) :]
                if delimiter and delimiter in rest:
                    common = prefix + rest.split(delimiter, 1)[0] + delimiter
                    if common not in prefixes:
                        if len(contents) + len(prefixes) >= limit:
                            break
                        prefixes.append(common)
                    last = key
                    continue
                if len(contents) + len(prefixes) >= limit:
                    break
                contents.append((key, self.objects[key]))
                last = key
            truncated = bool(keys) and last != keys[-1]
        parts = [
            f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{_XMLNS}">',
            f"<Name>{BUCKET}</Name><Prefix>{escape(prefix)}</Prefix>",
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{limit}</MaxKeys>",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if delimiter:
            parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        if truncated:
            parts.append(f"<NextContinuationToken>{escape(last)}</NextContinuationToken>")
        for key, obj in contents:
            stamp = obj.modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            parts.append(
                f"<Contents><Key>{escape(key)}</Key><LastModified>{stamp}</LastModified>"
                f"<ETag>{escape(obj.etag)}</ETag><Size>{len(obj.body)}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        for common in prefixes:
            parts.append(f"<CommonPrefixes><Prefix>{escape(common)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        return 200, "".join(parts).encode()

    def _object(self, key: str) -> StoredObject | None:
        with self._lock:
            return self.objects.get(key)


_FILTERS = {"gte": lambda a, b: a >= b, "gt": lambda a, b: a > b, "lte": lambda a, b: a <= b,
            "lt": lambda a, b: a < b}  # fmt: skip


def _matches(row: dict[str, Any], query: dict[str, str]) -> bool:
    for name, value in query.items():
        field, _, op = name.partition(".")
        if field not in row or name in ("limit", "cursor", "sort", "order", "apiKey"):
            continue
        if op == "any_of":
            if str(row[field]) not in value.split(","):
                return False
        elif op in _FILTERS:
            if row[field] is None or not _FILTERS[op](str(row[field]), value):
                return False
        elif field == "active":
            if str(row[field]).lower() != value.lower():
                return False
        elif str(row[field]) != value:
            return False
    return True


def _page(
    rows: list[dict[str, Any]], query: dict[str, str], path: str, base: str, most: int
) -> dict[str, Any]:
    limit = max(1, min(int(query.get("limit", "100")), 5000, most))
    offset = int(query.get("cursor", "0"))
    found = [r for r in rows if _matches(r, query)]
    page = found[offset : offset + limit]
    answer: dict[str, Any] = {"status": "OK", "request_id": "local", "results": page}
    if offset + limit < len(found):
        rest = {k: v for k, v in query.items() if k not in ("cursor", "apiKey")}
        rest["cursor"] = str(offset + limit)
        answer["next_url"] = f"{base}{path}?{urllib.parse.urlencode(rest)}"
    return answer


def _error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error>"
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer: expected in tests that stop reading


def _handler(server: MassiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out as two writes: without this, Nagle's algorithm and the
            # client's delayed ACK hold each answer back 40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if "Content-Type" not in (headers or {}):
                self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _rest(self, path: str, query: dict[str, str]) -> None:
            bearer = self.headers.get("Authorization", "")
            key = bearer[len("Bearer ") :] if bearer.startswith("Bearer ") else query.get("apiKey")
            if not key:
                self._json(401, {"status": "ERROR", "request_id": "local",
                                 "error": "API Key was not provided"})  # fmt: skip
                return
            if key != API_KEY:
                self._json(401, {"status": "ERROR", "request_id": "local",
                                 "error": "Unknown API Key"})  # fmt: skip
                return
            if path == "/stocks/v1/splits":
                rows = sorted(server.splits, key=lambda r: (r["execution_date"], r["id"]))
            elif path == "/stocks/v1/dividends":
                rows = sorted(server.dividends, key=lambda r: (r["ex_dividend_date"], r["id"]))
            elif path == "/v3/reference/tickers":
                rows = sorted(server.tickers, key=lambda r: r["ticker"])
                query.setdefault("active", "true")
            elif path.startswith("/vX/reference/tickers/") and path.endswith("/events"):
                ticker = path[len("/vX/reference/tickers/") : -len("/events")]
                found = server.events.get(ticker)
                if found is None:
                    self._json(404, {"status": "NOT_FOUND", "request_id": "local",
                                     "message": "Ticker not found."})  # fmt: skip
                    return
                self._json(200, {"status": "OK", "request_id": "local", "results": found})
                return
            else:
                self._json(404, {"status": "NOT_FOUND", "request_id": "local",
                                 "message": "Not found"})  # fmt: skip
                return
            self._json(200, _page(rows, query, path, server.url, server.page_limit))

        def _s3(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            path = urllib.parse.unquote(parts.path)
            with server._lock:
                server.requests.append(Request(self.command, path, query))
            if path.startswith(("/stocks/", "/v3/", "/vX/")):
                self._rest(path, query)
                return
            found = _CREDENTIAL.search(self.headers.get("Authorization", ""))
            if found is None or found.group(1) != ACCESS_KEY_ID:
                self._send(403, _error("InvalidAccessKeyId", "The access key is not known."))
                return
            bucket, _, key = path.lstrip("/").partition("/")
            if bucket != BUCKET:
                self._send(404, _error("NoSuchBucket", "The bucket does not exist."))
                return
            if not key:
                if self.command != "GET" or query.get("list-type") != "2":
                    self._send(400, _error("InvalidRequest", "Only ListObjectsV2 is served."))
                    return
                self._send(*server._list(query))
                return
            if key in server.forbidden:
                self._send(403, _error("AccessDenied", "Access Denied"))
                return
            obj = server._object(key)
            if obj is None:
                self._send(404, _error("NoSuchKey", "The key does not exist."))
                return
            wanted = self.headers.get("If-Match")
            if wanted and wanted.strip() != obj.etag:
                self._send(412, _error("PreconditionFailed", "If-Match did not match."))
                return
            headers = {
                "ETag": obj.etag,
                "Last-Modified": email.utils.format_datetime(obj.modified, usegmt=True),
                "Accept-Ranges": "bytes",
                "Content-Type": "application/x-gzip",
            }
            body = obj.body
            asked = _RANGE.match(self.headers.get("Range", "").strip())
            if asked:
                first = int(asked.group(1))
                last = int(asked.group(2)) if asked.group(2) else len(body) - 1
                last = min(last, len(body) - 1)
                headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                self._send(206, body[first : last + 1], headers)
                return
            self._send(200, body, headers)

        do_GET = do_HEAD = _s3

    return Handler


@contextlib.contextmanager
def massive_server() -> Iterator[MassiveServer]:
    with MassiveServer() as server:
        yield server
