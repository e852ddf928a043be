"""read_ahead: a source produced on its own thread, in order, bounded, stopped when closed."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from marketpipe.model.read_ahead import read_ahead


def counted(n: int, made: list[int], closed: threading.Event) -> Iterator[int]:
    try:
        for i in range(n):
            made.append(threading.get_ident())
            yield i
    finally:
        closed.set()


def test_items_come_in_order_from_another_thread() -> None:
    made: list[int] = []
    closed = threading.Event()
    assert list(read_ahead(counted(100, made, closed), 3, "mp-test-ahead")) == list(range(100))
    assert threading.get_ident() not in made and closed.is_set()


def test_the_source_stays_at_most_depth_ahead_of_its_reader() -> None:
    made: list[int] = []
    taken = 0
    most_ahead = 0

    def source() -> Iterator[int]:
        nonlocal most_ahead
        for i in range(1000):
            most_ahead = max(most_ahead, i - taken)
            made.append(i)
            yield i

    for _ in read_ahead(source(), 4, "mp-test-ahead"):
        taken += 1
    # Four waiting, one in the producer's hand, one being counted by the reader.
    assert taken == 1000 and most_ahead <= 6


def test_an_error_of_the_source_reaches_the_reader_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("broken at 3")

    got: list[int] = []
    with pytest.raises(ValueError, match="broken at 3"):
        for item in read_ahead(source(), 2, "mp-test-ahead"):
            got.append(item)
    assert got == [1, 2]


def test_closing_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()
    ahead = read_ahead(counted(10**9, [], closed), 2, "mp-test-stopped")
    assert next(ahead) == 0
    assert any(t.name == "mp-test-stopped" for t in threading.enumerate())
    ahead.close()  # type: ignore[attr-defined]
    assert closed.is_set()
    assert not any(t.name == "mp-test-stopped" for t in threading.enumerate())


def test_no_depth_reads_on_the_callers_thread() -> None:
    made: list[int] = []
    assert list(read_ahead(counted(5, made, threading.Event()), 0, "unused")) == list(range(5))
    assert set(made) == {threading.get_ident()}
