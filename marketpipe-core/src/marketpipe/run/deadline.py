"""The job's overall deadline: ``--deadline 6h`` (else ``MARKETPIPE_DEADLINE``, else
``deadline = "6h"`` in the config file, else 12 hours).

A run of a job ends by then whatever the provider does: no unit starts after it, fetches in
flight are dropped, requests still rate-limited give up, and the job ends FAILED with its
unfetched partitions left for the next run (exit code 75). A nightly job should have a deadline
shorter than a night, so one run never overlaps the next.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from marketpipe.model.errors import InvalidInputError
from marketpipe.plugins.settings import ConfigFile, config_path

DEADLINE_ENV = "MARKETPIPE_DEADLINE"
DEFAULT_DEADLINE = "12h"
_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d|)", re.IGNORECASE)


def parse_duration(text: str, what: str = "--deadline") -> float:
    """Seconds in ``90s``, ``45m``, ``6h``, ``1d`` or a plain number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0.0
    if seconds <= 0:
        raise InvalidInputError(
            f"{what} must be a positive duration such as 90s, 45m, 6h or 1d, got {text!r}"
        )
    return seconds


def choose_deadline(
    requested: str | None = None,
    environ: Mapping[str, str] | None = None,
    config: ConfigFile | None = None,
) -> float:
    """The deadline's seconds, from the first of: the option, the environment, the config."""
    env = os.environ if environ is None else environ
    if requested:
        return parse_duration(requested)
    if env.get(DEADLINE_ENV, "").strip():
        return parse_duration(env[DEADLINE_ENV], DEADLINE_ENV)
    config = config if config is not None else ConfigFile.load(config_path(environ=env))
    configured = config.data.get("deadline")
    if configured is not None:
        return parse_duration(str(configured), "deadline in the config file")
    return parse_duration(DEFAULT_DEADLINE)
