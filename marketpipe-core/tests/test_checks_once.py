"""One ``mp ingest`` asks each question once: the job store lists its jobs once and never
loads the job it just admitted, the provider spec is resolved once, the overlap check runs once,
the config file is parsed once, the dataset's sink is chosen once, and each unit's symbol column
is dictionary-encoded once. A spy
on each counts the calls; a second call fails the test."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.values import Symbol, TimeRange
from marketpipe.plugins import registry, settings
from marketpipe.run import admission
from marketpipe.run.pipeline import IngestRequest, run_ingest
from marketpipe.storage import sinks


def spy(monkeypatch: pytest.MonkeyPatch, calls: Counter[str], owner: Any, name: str) -> None:
    real: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Counter[str]:
    config = tmp_path / "marketpipe.toml"
    config.write_text('sink = "parquet"\n')
    monkeypatch.setenv("MARKETPIPE_CONFIG", str(config))
    counter: Counter[str] = Counter()
    for owner, name in (
        (SqliteJobStore, "list_jobs"),
        (SqliteJobStore, "get"),
        (registry, "get"),
        (admission, "check_no_running_overlap"),
        (settings, "_parse"),
        (pc, "dictionary_encode"),
        (sinks, "recorded_sink"),
    ):
        spy(monkeypatch, counter, owner, name)
    return counter


def ingest(data_dir: Path, **kw: Any) -> Any:
    request = IngestRequest(
        provider="step",
        symbols=(Symbol("AAPL"), Symbol("MSFT")),
        time_range=TimeRange("2024-01-29", "2024-02-02"),
        data_dir=data_dir,
        batch_size=390 * 2,  # several units
        **kw,
    )
    return asyncio.run(run_ingest(request))


def test_one_ingest_asks_each_question_once(
    step_provider: list[Any], data_dir: Path, calls: Counter[str]
) -> None:
    summary = ingest(data_dir)
    assert summary.partitions_completed == 10
    units = len(step_provider)
    assert units > 2
    assert calls == Counter(
        list_jobs=1,
        get=1,  # the provider's spec; the job store's get is never called
        check_no_running_overlap=1,
        _parse=1,
        dictionary_encode=units,
        recorded_sink=1,  # the dataset's sink is chosen once
    )


def test_a_resumed_request_is_admitted_from_the_same_single_listing(
    step_provider: list[Any], data_dir: Path, calls: Counter[str]
) -> None:
    ingest(data_dir, overrides={"fail_symbol": "MSFT"})
    step_provider.clear()
    settings._PARSED.clear()  # a new command, a new process
    calls.clear()
    summary = ingest(data_dir, overrides={"fail_symbol": "MSFT"})
    assert summary.resumed
    assert (calls["list_jobs"], calls["get"], calls["check_no_running_overlap"]) == (1, 1, 1)
    assert calls["_parse"] == 1
