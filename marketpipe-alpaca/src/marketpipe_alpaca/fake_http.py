"""The wire of ``FakeAlpacaServer``: its request handler (the outage, the rate limit and its
429s, the injected faults, gzip) around what :meth:`FakeAlpacaServer.answer` says, and the
cache of gzipped answers."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from marketpipe_alpaca.testing import FakeAlpacaServer


class GzipCache:
    """Answers gzipped, the last ``size`` kept by their digest: a benchmark's client is timed
    beside the server on the same cores, and a page asked again is not compressed again (3 ms a
    page of 10,000 trades)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._packed: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def packed(self, body: bytes) -> bytes:
        digest = hashlib.blake2b(body, digest_size=16).digest()
        with self._lock:
            packed = self._packed.get(digest)
        if packed is None:
            packed = gzip.compress(body, compresslevel=1)
            with self._lock:
                self._packed[digest] = packed
                while len(self._packed) > self.size:
                    self._packed.popitem(last=False)
        return packed


def handler_class(server: FakeAlpacaServer) -> type[BaseHTTPRequestHandler]:
    """The request handler of ``server``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            if self.path == "/_stats":  # for benchmarks that run the server in a process
                self._send(
                    200, {"Content-Type": "application/json"}, json.dumps(server.stats).encode()
                )
                return
            # "requests" counts bar requests; corporate actions are counted on their own.
            if self.path.startswith("/v1/corporate-actions"):
                server.stats["action_requests"] += 1
            else:
                server.stats["requests"] += 1
            if server.down:
                server.stats["refused_down"] += 1
                self.close_connection = True
                self.connection.close()
                return
            wait = server._over_limit()
            if wait is not None and not server.hints:
                server.stats["429_limit"] += 1
                self._send(429, {"Content-Type": "text/plain"}, b"too many requests")
                return
            if wait is not None:
                server.stats["429_limit"] += 1
                body = b'{"code":42910000,"message":"too many requests"}'
                self._send(
                    429,
                    {
                        "X-RateLimit-Limit": str(server.rate_limit),
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(int(time.time() + wait + 1)),
                    },
                    body,
                )
                return
            fault = server._pick_fault()
            if fault:
                server.stats[f"fault_{fault}"] += 1
            if fault == "429":
                self._send(429, {"Content-Type": "text/plain"}, b"too many requests")
                return
            if fault in ("500", "503"):
                body = b"upstream error"
                if server.echo_headers:
                    body += b": " + json.dumps(dict(self.headers.items())).encode()
                self._send(int(fault), {"Content-Type": "text/plain"}, body)
                return
            if fault == "reset":
                self.close_connection = True
                self.connection.close()
                return
            if fault == "slow":
                time.sleep(server.slow_seconds)
            url = urlsplit(self.path)
            if url.path == "/v2/stocks/bars":
                server._wait_if_held()
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = server.answer(url.path, parse_qs(url.query), headers)
            server.stats[f"status_{status}"] += 1
            if "gzip" in headers.get("accept-encoding", "") and len(body) > 256:
                body = server.gzip.packed(body)
                extra["Content-Encoding"] = "gzip"
            if fault == "truncated" and status == 200:
                self.send_response(200)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return
            self._send(status, extra, body)

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
