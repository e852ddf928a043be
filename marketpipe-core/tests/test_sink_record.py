"""A dataset records its sink once: the first writer's name stands, whoever races it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from marketpipe.model.errors import InvalidInputError
from marketpipe.storage.sinks import record_sink, recorded_sink
from marketpipe.storage.stores import LocalStore


def test_create_writes_a_name_once_and_reports_who_did(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert store.create("_marketpipe/x.json", b"first") is True
    assert store.create("_marketpipe/x.json", b"second") is False
    assert (tmp_path / "_marketpipe" / "x.json").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "_marketpipe").iterdir()] == ["x.json"]  # no temp left


def test_of_many_writers_creating_one_name_exactly_one_wins(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    start = threading.Barrier(8)
    won: list[bytes] = []

    def writer(n: int) -> None:
        start.wait()
        if store.create("race.json", f"writer {n}".encode()):
            won.append(f"writer {n}".encode())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert (tmp_path / "race.json").read_bytes() == won[0]


def test_a_second_record_of_another_sink_is_refused_and_the_first_stands(tmp_path: Path) -> None:
    record_sink(tmp_path, "parquet")
    record_sink(tmp_path, "parquet")  # the same sink again: nothing to say
    with pytest.raises(InvalidInputError, match="written by the parquet sink, not delta"):
        record_sink(tmp_path, "delta")
    assert recorded_sink(tmp_path) == "parquet"
