"""SIGTERM as Ctrl-C wherever no job's own handler is in place: at start-up, while modules load,
and after a job's event loop has closed (which resets SIGTERM to the default, a bare 143)."""

from __future__ import annotations

import signal
from typing import Any


def _stop(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def install_stop_handlers() -> None:
    """SIGTERM raises KeyboardInterrupt, which ``mp`` turns into exit 130 with one line."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
