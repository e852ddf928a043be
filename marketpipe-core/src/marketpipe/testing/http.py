"""``ScriptedServer``: a real HTTP/1.1 server on 127.0.0.1 that misbehaves on request, for testing
an HTTP provider's client against what hostile or broken servers do.

Each request takes the next :class:`Answer` of the script (the last one repeats): a status,
headers and a body, sent whole, trickled a byte at a time, gzip-encoded, chunked without a
length, or cut short. The server counts what it was asked and how many body bytes it managed to
send, so a test can prove a client stopped reading.
"""

from __future__ import annotations

import gzip
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Iterable, Mapping

import attrs


@attrs.frozen
class Answer:
    """One scripted answer.

    :param trickle: seconds between single bytes of the body (a slow-loris server).
    :param header_trickle: seconds between single bytes of the status line and headers.
    :param gzip: send the body gzip-compressed (``Content-Encoding: gzip``).
    :param chunked: send it chunked, without ``Content-Length``.
    :param length: the ``Content-Length`` to announce (default: the real one).
    """

    status: int = 200
    body: bytes = b"{}"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    trickle: float = 0.0
    header_trickle: float = 0.0
    gzip: bool = False
    chunked: bool = False
    length: int | None = None


def gzip_bomb(decompressed_bytes: int) -> bytes:
    """One gzip member holding ``decompressed_bytes`` spaces (about a thousand times smaller)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * 2**20
    parts = []
    for start in range(0, decompressed_bytes, len(block)):
        parts.append(packer.compress(block[: decompressed_bytes - start]))
    parts.append(packer.flush())
    return b"".join(parts)


class ScriptedServer:
    """Start with ``with ScriptedServer([Answer(...), ...]) as server:``; ``server.url``."""

    def __init__(self, answers: Iterable[Answer]) -> None:
        self.answers = list(answers) or [Answer()]
        self.requests: list[str] = []
        self.sent_body_bytes: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _next(self, request_line: str) -> tuple[int, Answer]:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request_line)
            self.sent_body_bytes.append(0)
            return index, self.answers[min(index, len(self.answers) - 1)]

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        while not self._stop.is_set():
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
            except OSError:
                return
            index, answer = self._next(head.split(b"\r\n", 1)[0].decode("latin-1"))
            try:
                self._answer(conn, index, answer)
            except OSError:  # the client hung up: what a client that gives up does
                return

    def _send_slowly(self, conn: socket.socket, data: bytes, pause: float, index: int) -> None:
        for i in range(len(data)):
            if self._stop.wait(pause):
                raise OSError("server stopping")
            conn.sendall(data[i : i + 1])
            if index >= 0:
                with self._lock:
                    self.sent_body_bytes[index] += 1

    def _answer(self, conn: socket.socket, index: int, answer: Answer) -> None:
        body = gzip.compress(answer.body) if answer.gzip else answer.body
        headers = {"Content-Type": "application/json", **answer.headers}
        if answer.gzip:
            headers["Content-Encoding"] = "gzip"
        if answer.chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(len(body) if answer.length is None else answer.length)
        head = f"HTTP/1.1 {answer.status} Scripted\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        head_bytes = (head + "\r\n").encode("latin-1")
        if answer.header_trickle:
            self._send_slowly(conn, head_bytes, answer.header_trickle, -1)
        else:
            conn.sendall(head_bytes)
        if answer.trickle:
            framed = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
            self._send_slowly(conn, framed if answer.chunked else body, answer.trickle, index)
            return
        step = 65536
        for start in range(0, len(body), step):
            if self._stop.is_set():
                return
            piece = body[start : start + step]
            conn.sendall(
                f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if answer.chunked else piece
            )
            with self._lock:
                self.sent_body_bytes[index] += len(piece)
        if answer.chunked:
            conn.sendall(b"0\r\n\r\n")
        if answer.length is not None and answer.length > len(body):
            time.sleep(0.05)
            conn.shutdown(socket.SHUT_RDWR)  # a transfer cut short
