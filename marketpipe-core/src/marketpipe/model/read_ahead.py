"""An iterator produced on a thread of its own, a bounded number of items ahead of its reader.

A source whose items cost native work that lets go of the GIL (inflating, parsing) then runs
beside what its reader does with the items, on another core. Memory stays bounded: at most
``depth`` items wait. An exception raised by the source reaches the reader in its place.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(items: Iterator[T], depth: int, name: str) -> Iterator[T]:
    """``items``, produced on a thread named ``name`` up to ``depth`` ahead of the caller.
    Closing the returned generator (or dropping it) stops the thread and closes ``items``."""
    if depth <= 0:
        yield from items
        return
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the reader, raised there
            put(_Raised(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        while True:  # a producer waiting to put sees the stop at once
            try:
                box.get_nowait()
            except queue.Empty:
                break
        if thread is not threading.current_thread():  # dropped on its own thread: it ends
            thread.join()
