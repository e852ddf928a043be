"""Progress of long operations inside providers (downloads, decoding), shown by whoever runs them.

A provider calls :func:`task` and advances it; the CLI installs a reporter that draws a rich
progress bar with bytes and rate; with none installed (tests, library use) nothing is drawn.
"""

from __future__ import annotations

from typing import Protocol


class TaskHandle(Protocol):
    def update(self, completed: int, total: int | None = None) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int | None, unit: str) -> TaskHandle: ...


class _Silent:
    def update(self, completed: int, total: int | None = None) -> None:
        return None

    def close(self) -> None:
        return None


class _SilentReporter:
    def task(self, description: str, total: int | None, unit: str) -> TaskHandle:
        return _Silent()


_reporter: Reporter = _SilentReporter()


def set_reporter(reporter: Reporter | None) -> Reporter:
    """Install ``reporter`` (``None``: draw nothing); returns the one it replaces."""
    global _reporter
    previous = _reporter
    _reporter = reporter if reporter is not None else _SilentReporter()
    return previous


def task(description: str, total: int | None = None, unit: str = "bytes") -> TaskHandle:
    """Start a progress task; ``unit="bytes"`` shows sizes and a transfer rate."""
    return _reporter.task(description, total, unit)
