from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pytest
from marketpipe_massive.testing import MassiveServer, publish_market, publish_reference
from massive_helpers import DAYS


@pytest.fixture
def server() -> Iterator[MassiveServer]:
    with MassiveServer() as running:
        yield running


@pytest.fixture
def market(server: MassiveServer) -> dict[dt.date, pa.Table]:
    """The week's files and reference data published; each day's minute table as written."""
    publish_reference(server)
    return publish_market(server, DAYS, ticks=True)
