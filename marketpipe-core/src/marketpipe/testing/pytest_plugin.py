"""MarketPipe's pytest plugin (entry point ``pytest11``), loaded wherever ``marketpipe-core`` is
installed: fixtures for plugin authors' tests and ours.

- ``fresh_plugins``: the test sees the installed plugins only and leaves nothing behind:
  providers it registers in-process are forgotten after it, and the plugin host and the parsed
  config file are loaded afresh. Use it (or make it autouse in your ``conftest.py``) in tests
  that register providers or change ``MARKETPIPE_*`` plugin settings.

The conformance kits are in :mod:`marketpipe.testing` (``check_provider``, ``check_sink``,
``check_validator``); local servers in :mod:`marketpipe.testing.http` (a scripted, misbehaving
HTTP server) and :mod:`marketpipe.testing.s3` (an S3 server on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from marketpipe.plugins.registry import isolated


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    with isolated():
        yield
