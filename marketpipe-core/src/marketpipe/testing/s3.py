"""A real S3-compatible server on 127.0.0.1 for tests and benches of datasets in object storage:
moto's standalone server (``pip install "moto[server]"``), started and stopped by whoever needs
it, and a relay in front of it that can go down, come back and answer ``503 SlowDown``, counting
the requests and bytes that pass."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

KEY_ID = "AKIAMARKETPIPETEST"
SECRET = "mp-test-secret-0123456789abcdefXYZ"


@attrs.frozen
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def bucket(self, name: str) -> str:
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()
        return name


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[S3Server]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection the client or ``down`` cut: expected here, not worth a traceback


class FaultyEndpoint:
    """An HTTP relay in front of the S3 server that the test can take down (connections
    refused, open ones cut), bring back on the same port, or have answer ``503 SlowDown`` to
    the next requests. The server behind it keeps its objects throughout."""

    def __init__(self, target: S3Server) -> None:
        self.target = urllib.parse.urlsplit(target.endpoint)
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.throttle = 0
        self.throttled = 0
        self.relayed = 0
        #: Requests relayed, by method; bytes sent up (request bodies) and down (answers).
        self.methods: dict[str, int] = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()

    def env(self) -> dict[str, str]:
        return {**S3Server(self.endpoint).env()}

    def slow_down(self, requests: int) -> None:
        with self._lock:
            self.throttle = requests

    def up(self) -> None:
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with relay._lock:
                    relay._sockets.add(self.connection)

            def finish(self) -> None:
                with relay._lock:
                    relay._sockets.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with relay._lock:
                    throttled = relay.throttle > 0
                    if throttled:
                        relay.throttle -= 1
                        relay.throttled += 1
                    else:
                        relay.relayed += 1
                        relay.methods[self.command] = relay.methods.get(self.command, 0) + 1
                        relay.bytes_up += len(body)
                if throttled:
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(
                    relay.target.hostname or "127.0.0.1", relay.target.port, timeout=60
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    with relay._lock:
                        relay.bytes_down += len(data)
                    self.send_response(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in _HOP and key.lower() != "content-length":
                            self.send_header(key, value)
                    if self.command == "HEAD":
                        self.send_header("Content-Length", answer.getheader("Content-Length", "0"))
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        server = _QuietServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def down(self) -> None:
        """Refuse new connections and cut the open ones, as a store gone away does."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()


@contextmanager
def faulty_endpoint(target: S3Server) -> Iterator[FaultyEndpoint]:
    relay = FaultyEndpoint(target)
    relay.up()
    try:
        yield relay
    finally:
        relay.down()
