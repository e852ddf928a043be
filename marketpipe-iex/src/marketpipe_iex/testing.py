"""``FakeHistServer``: a local stand-in for IEX HIST (index and capture downloads) on 127.0.0.1.

It serves ``/api/1.0/hist`` (a map of days to file lists) and ``/api/1.0/hist?date=YYYYMMDD`` (a
list), and each capture under a GCS-style encoded link with HTTP Range support. Faults for tests:
cut a download after N bytes (the connection drops), ignore Range (answer 200), throttle to a
byte rate (so a process can be killed half-way), answer the day query in the map shape, sizes
as integers. ``requests`` records every request's path and Range header.

Run it by hand: ``python -m marketpipe_iex.testing FILE... [--port 8765]`` serves the given
captures, each listed under the day and feed read from its content.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs

from marketpipe_iex.sources import scan

_RANGE = re.compile(r"bytes=(\d+)-$")


@attrs.frozen
class ServedFile:
    path: Path
    day: dt.date
    feed: str = "TOPS"
    version: str = "1.6"
    protocol: str = "IEXTP1"

    @property
    def name(self) -> str:
        return f"{self.day:%Y%m%d}_{self.protocol}_{self.feed}{self.version}.pcap.gz"


@attrs.define
class Faults:
    cut_after: int | None = None  # drop the connection after this many body bytes...
    cuts: int = 0  # ...this many times
    ignore_range: bool = False
    bytes_per_second: float | None = None
    day_query_as_map: bool = False
    size_as_int: bool = False
    wrong_size: bool = False  # the index claims one byte more than the file holds


class FakeHistServer:
    def __init__(
        self, files: list[ServedFile], faults: Faults | None = None, port: int = 0
    ) -> None:
        self.files = list(files)
        self.faults = faults or Faults()
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/1.0"

    def __enter__(self) -> FakeHistServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def entry(self, served: ServedFile) -> dict[str, Any]:
        host, port = self._server.server_address[:2]
        quoted = urllib.parse.quote(f"data/feeds/{served.day:%Y%m%d}/{served.name}", safe="")
        size = served.path.stat().st_size + (1 if self.faults.wrong_size else 0)
        return {
            "link": f"http://{host!s}:{port}/download/storage/v1/b/iex/o/{quoted}?generation=1&alt=media",
            "date": f"{served.day:%Y%m%d}",
            "feed": served.feed,
            "version": served.version,
            "protocol": served.protocol,
            "size": size if self.faults.size_as_int else str(size),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                return None

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                with server._lock:
                    server.requests.append((url.path, self.headers.get("Range")))
                if url.path.rstrip("/").endswith("/hist"):
                    self._index(urllib.parse.parse_qs(url.query).get("date", [None])[0])
                elif url.path.startswith("/download/"):
                    self._file(urllib.parse.unquote(url.path).rsplit("/", 1)[-1])
                else:
                    self._send(404, b'{"error":"not found"}')

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _index(self, day: str | None) -> None:
                listing: dict[str, list[dict[str, Any]]] = {}
                for served in server.files:
                    listing.setdefault(f"{served.day:%Y%m%d}", []).append(server.entry(served))
                if day is None:
                    self._send(200, json.dumps(listing).encode())
                elif server.faults.day_query_as_map:
                    self._send(200, json.dumps({day: listing.get(day, [])}).encode())
                else:
                    self._send(200, json.dumps(listing.get(day, [])).encode())

            def _file(self, name: str) -> None:
                served = next((f for f in server.files if f.name == name), None)
                if served is None:
                    self._send(404, b"no such file")
                    return
                data = served.path.read_bytes()
                start = 0
                match = _RANGE.match(self.headers.get("Range") or "")
                if match and not server.faults.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                with server._lock:
                    cut = server.faults.cut_after if server.faults.cuts > 0 else None
                    if cut is not None:
                        server.faults.cuts -= 1
                if cut is not None:
                    body = body[:cut]
                step = 16 << 10
                for i in range(0, len(body), step):
                    try:
                        self.wfile.write(body[i : i + step])
                        self.wfile.flush()
                    except OSError:
                        return
                    if server.faults.bytes_per_second:
                        time.sleep(step / server.faults.bytes_per_second)
                if cut is not None:
                    self.close_connection = True
                    self.connection.close()

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    served = [ServedFile(c.path, c.day, c.feed) for path in args.files for c in scan(str(path))]
    with FakeHistServer(served, port=args.port) as server:
        print(f"IEX HIST index at {server.base_url}/hist (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
