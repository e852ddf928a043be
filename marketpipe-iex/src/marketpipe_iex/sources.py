"""Local captures given with ``--source``: each one's day and feed read from its content."""

from __future__ import annotations

import datetime as dt
import glob
import os
from pathlib import Path

import attrs
from marketpipe.model.errors import InvalidInputError

from marketpipe_iex.decode import CaptureFormatError, probe


@attrs.frozen
class LocalCapture:
    path: Path
    day: dt.date
    feed: str
    container: str

    @property
    def label(self) -> str:
        return f"{self.day} {self.feed} ({self.path.name})"


def expand(pattern: str) -> list[Path]:
    """Files named by a path, a folder (every file in it) or a glob."""
    text = os.path.expanduser(pattern)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InvalidInputError(f"iex: --source folder {pattern!r} holds no file")
        return files
    if path.is_file():
        return [path]
    found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
    if not found:
        raise InvalidInputError(f"iex: --source {pattern!r} matches no file")
    return found


def scan(pattern: str) -> list[LocalCapture]:
    """Probe every file of ``pattern`` (a few KB each): its day, feed and container."""
    captures = []
    for path in expand(pattern):
        try:
            stats = probe(path)
        except CaptureFormatError as exc:
            raise InvalidInputError(f"iex: {path}: {exc}") from None
        except OSError as exc:
            raise InvalidInputError(f"iex: cannot read {path}: {exc.strerror or exc}") from None
        if stats.day is None or stats.feed is None:
            raise InvalidInputError(f"iex: {path} holds no IEX-TP segment in its first packets")
        captures.append(LocalCapture(path, stats.day, stats.feed, stats.container))
    seen: dict[tuple[dt.date, str], LocalCapture] = {}
    for capture in captures:
        key = (capture.day, capture.feed)
        if key in seen:
            raise InvalidInputError(
                f"iex: two {capture.feed} captures of {capture.day}: {seen[key].path} and "
                f"{capture.path}; give one"
            )
        seen[key] = capture
    return captures
