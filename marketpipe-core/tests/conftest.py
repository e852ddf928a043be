"""Fixtures for core tests: an in-process provider, a data dir, and real entry-point plugins
written as dist-info folders on a temporary path (discovered by importlib.metadata like any
installed distribution)."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from marketpipe.calendar import SessionWindow
from marketpipe.ingestion.domain.ports import IMarketDataProvider
from marketpipe.ingestion.domain.request import FetchRequest
from marketpipe.ingestion.infrastructure import registry
from marketpipe.plugins import reset_plugins
from marketpipe.schema import bars_batch
from marketpipe.specs import Setting

MINUTE = 60 * 1_000_000_000


def simple_bars(symbol: str, window: SessionWindow, step_minutes: int = 1) -> pa.RecordBatch:
    """Valid, deterministic bars covering a window: price 100 + minute/100."""
    step = step_minutes * MINUTE
    first = window.midnight_ns + (window.start_ns - window.midnight_ns) // step * step
    ts = np.arange(first, window.end_ns, step, dtype=np.int64)
    base = 100.0 + np.arange(len(ts)) / 100.0
    return bars_batch(symbol, ts, base, base + 0.5, base - 0.5, base + 0.1,
                      np.full(len(ts), 10, dtype=np.int64), np.full(len(ts), 2), base)


class StepProvider(IMarketDataProvider):
    """Test provider: one bar per minute of every window; optional failure for one symbol."""

    feed = "test"
    calls: list[FetchRequest] = []

    def __init__(self, fail_symbol: str = "", token: object = None) -> None:
        self.fail_symbol = fail_symbol
        self.token = token

    def fetch(self, request: FetchRequest) -> Iterator[pa.RecordBatch]:
        StepProvider.calls.append(request)
        for symbol in request.symbols:
            if symbol.value == self.fail_symbol:
                raise ConnectionError(f"upstream refused {symbol}")
            for window in request.windows:
                yield simple_bars(symbol.value, window, request.timeframe.minutes)


@pytest.fixture(autouse=True)
def fresh_plugins() -> Iterator[None]:
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture
def step_provider() -> Iterator[type[StepProvider]]:
    StepProvider.calls = []
    registry.provider(
        "step",
        settings=[Setting("fail_symbol", "symbol that fails", default=""),
                  Setting("token", "a secret", secret=True)],
        deterministic=True,
    )(StepProvider)
    yield StepProvider
    registry.unregister("step")


def write_plugin(
    site: Path, dist: str, module: str, source: str, entry_name: str | None = None
) -> None:
    """A minimal installed distribution: a module and its dist-info with one entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[marketpipe]\n{entry_name or module} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path (and PYTHONPATH for subprocesses) to 'install' plugins into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    yield folder
    for name in list(sys.modules):
        if name.startswith("tp_"):
            del sys.modules[name]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
