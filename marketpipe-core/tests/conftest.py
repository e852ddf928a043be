"""Fixtures for core tests: a registered test provider, a fresh plugin manager, a folder on the
import path to install plugins into, and a data dir."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_helpers import StepProvider
from marketpipe.model.request import FetchRequest
from marketpipe.plugins import registry
from marketpipe.plugins.specs import Setting


@pytest.fixture(autouse=True)
def _isolated(fresh_plugins: None) -> None:
    """Every core test starts from the installed plugins and leaves none of its own behind
    (``fresh_plugins`` is MarketPipe's pytest plugin's)."""


@pytest.fixture
def step_provider() -> Iterator[list[FetchRequest]]:
    """Registers the ``step`` provider; yields the list of requests its instances are asked."""
    calls: list[FetchRequest] = []

    class Step(StepProvider):
        """A step provider that records into this test's own list."""

        def __init__(
            self, fail_symbol: str = "", token: object = None, empty_symbol: str = ""
        ) -> None:
            super().__init__(fail_symbol, token, calls, empty_symbol)

    registry.provider(
        "step",
        settings=[
            Setting("fail_symbol", "symbol that fails", default=""),
            Setting("token", "a secret", secret=True),
            Setting("empty_symbol", "symbol that gets no bars", default=""),
        ],
        deterministic=True,
    )(Step)
    yield calls
    registry.unregister("step")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path (and PYTHONPATH for subprocesses) to 'install' plugins into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    )
    yield folder
    for name in list(sys.modules):
        if name.startswith("tp_"):
            del sys.modules[name]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
