"""Cross-package tests: everything installed, the CLI run as a subprocess as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
